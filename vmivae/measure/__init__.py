"""Measuring a fixed model: the MI estimator, representation metrics, evaluation, studies.

* ``mi``: how much each latent component tells about the images (a fresh Q on the frozen model).
* ``metrics``: clustering accuracy, NMI, probes, exact MI of discrete variables.
* ``evaluation``: everything above for one trained run, as ``eval.json``.
* ``validation``: the estimator checked on channels whose MI is known.
* ``study``: a grid of runs measured into result files.
"""
