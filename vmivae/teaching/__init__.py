"""Support for the book's chapters: one-call setup for a notebook and the exercises' checkers."""
