"""Two layers of ``vmivae.models`` computed as matrix products: the same weights, faster on a CPU.

* Q's convolution whose kernel covers its whole input map (7x7 -> 1x1) and its 1x1 head are matrix
  products of the flattened map with the flattened kernel (:class:`WholeMapConv2d`): 2-3x faster on a CPU
  than the convolution kernel, its backward pass especially.
* The decoder's last transposed convolution, to 1 or 3 channels, is a matrix product and ``fold``
  (:class:`FewChannelConvTranspose2d`): ~2x faster on a CPU; for many output channels it is slower, so
  only that layer uses it.

Both subclass the plain layer and only replace ``forward``: parameters and ``state_dict`` keys are the
plain layer's, so a checkpoint loads into either. :func:`use_matmul_layers` swaps them into built
networks (the trainer does so when the config's ``matmul_layers`` is true, the default). They agree with the
plain layers to float rounding (``tests/test_models.py``); the plain ones are what the book shows.
"""

from __future__ import annotations

import torch
from torch import nn

FEW_CHANNELS = 3  # transposed convolutions with at most this many output channels use matmul + fold


class WholeMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` as ``linear`` when its kernel covers the whole unpadded input map (one output position)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != self.weight.shape[-2:] or self.padding != (0, 0) or self.groups != 1:
            return super().forward(x)
        out = nn.functional.linear(x.flatten(1), self.weight.flatten(1), self.bias)
        return out[:, :, None, None]


class FewChannelConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` as ``fold(W^T x)``: each input pixel's channels become a ``k x k`` output patch, overlaps summed."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if output_size is not None or x.dtype != self.weight.dtype or self.groups != 1 or self.dilation != (1, 1) or self.output_padding != (0, 0):
            return super().forward(x, output_size)
        b, c_in, h, w = x.shape
        k, s, p = self.kernel_size, self.stride, self.padding
        cols = torch.matmul(self.weight.reshape(c_in, -1).t(), x.reshape(b, c_in, h * w))  # [B, C_out * k * k, H * W]
        size = ((h - 1) * s[0] - 2 * p[0] + k[0], (w - 1) * s[1] - 2 * p[1] + k[1])
        out = nn.functional.fold(cols, size, k, padding=p, stride=s)
        return out + self.bias.view(1, -1, 1, 1) if self.bias is not None else out


def use_matmul_layers(*modules: nn.Module | None) -> None:
    """Compute the layers where it pays as matrix products, in place (the same parameter tensors).

    Every unpadded ``nn.Conv2d`` becomes a :class:`WholeMapConv2d` (which falls back to the convolution
    when a map is larger than its kernel) and every ``nn.ConvTranspose2d`` to at most ``FEW_CHANNELS``
    channels a :class:`FewChannelConvTranspose2d`. In the models that is Q's two layers after its trunk
    and the decoder's last layer; ``None`` (no Q) is skipped.
    """
    for module in modules:
        for layer in module.modules() if module is not None else ():
            if type(layer) is nn.Conv2d and layer.padding == (0, 0):
                layer.__class__ = WholeMapConv2d
            elif type(layer) is nn.ConvTranspose2d and layer.out_channels <= FEW_CHANNELS:
                layer.__class__ = FewChannelConvTranspose2d
