"""Fourier neural operator (Li et al. 2021) built from neuraloperator's FNO blocks, with our
lifting, projection, padding and FiLM conditioning.

What this wrapper adds on top of ``neuralop.layers.FNOBlocks``:

- FiLM conditioning on an embedding of ``cond`` after every Fourier block (1D and 2D).
- Even grids inside: neuraloperator 2.0's spectral convolution returns wrong results when a
  fully transformed axis (every axis but the last) has odd length (it applies ``fftshift``
  where ``ifftshift`` is needed, which differ only for odd lengths). Odd axes are therefore made
  even before the blocks and restored afterwards: by one extra cell of zero padding when the
  domain is padded anyway (non-periodic), by band-limited resampling to ``n + 1`` points when
  periodic (padding would break the periodicity).
- Float32 spectral convolutions under autocast (half-precision FFTs are restricted to
  power-of-two sizes on GPU and lose accuracy).
- A plain ``nn.Module``: no ``_metadata`` entry in the state dict (neuraloperator's model base
  class adds one, which breaks ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from neuralop.layers.channel_mlp import ChannelMLP
from neuralop.layers.fno_block import FNOBlocks
from neuralop.layers.spectral_convolution import SpectralConv
from torch import Tensor, nn

from sciflow.nn.embedding import ConditionEmbedding, check_cond
from sciflow.nn.film import FiLM
from sciflow.nn.grid import coordinate_channels, crop_spatial, fourier_resize, pad_spatial


class Float32SpectralConv(SpectralConv):
    """neuraloperator's ``SpectralConv`` run in float32 with autocast disabled.

    The library's spectral buffers are complex64 whatever the input, so float32 is also the only
    precision it supports; half-precision activations are cast up here.
    """

    #: run :meth:`_forward_out_of_place` (set on the copy that a vmapped ensemble calls, since
    #: neuraloperator writes the kept modes into a zero tensor in place, which vmap refuses)
    out_of_place: bool = False

    def forward(self, x: Tensor, output_shape=None) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self.out_of_place and self._out_of_place_supported(x, output_shape):
                return self._forward_out_of_place(x.float(), output_shape)
            return super().forward(x.float(), output_shape=output_shape)

    def _out_of_place_supported(self, x: Tensor, output_shape) -> bool:
        """Whether :meth:`_forward_out_of_place` covers this layer's configuration and ``x``."""
        weight = self.weight if torch.is_tensor(self.weight) else self.weight.to_tensor()
        sizes = list(x.shape[-self.order:])
        fft_size = sizes[:-1] + [sizes[-1] // 2 + 1]
        return not (self.separable or self.complex_data or self.fno_block_precision != "full"
                    or output_shape is not None or self.resolution_scaling_factor is not None
                    or list(self.n_modes) != list(self.max_n_modes)
                    or any(k > n for k, n in zip(weight.shape[2:], fft_size)))

    def _forward_out_of_place(self, x: Tensor, output_shape) -> Tensor:
        """The same convolution with no in-place writes, for the configuration our FNO builds
        (dense real weights, real data, full precision, all modes used; :meth:`forward` checks
        with :meth:`_out_of_place_supported`): ``(B, C_in, *S) -> (B, C_out, *S)``. The kept
        block of modes is contracted and zero-padded back."""
        weight = self.weight if torch.is_tensor(self.weight) else self.weight.to_tensor()
        sizes = list(x.shape[-self.order:])
        fft_size = sizes[:-1] + [sizes[-1] // 2 + 1]
        kept = list(weight.shape[2:])
        dims = list(range(-self.order, 0))
        xf = torch.fft.rfftn(x, norm=self.fft_norm, dim=dims)
        if self.order > 1:  # zero frequency to the middle of every fully transformed axis
            xf = torch.fft.fftshift(xf, dim=dims[:-1])
        starts = [n // 2 - k // 2 for n, k in zip(fft_size[:-1], kept[:-1])] + [0]
        block = xf[(..., *[slice(s, s + k) for s, k in zip(starts, kept)])]
        y = torch.einsum("bi...,io...->bo...", block, weight)
        pad: list[int] = []
        for s, k, n in reversed(list(zip(starts, kept, fft_size))):  # F.pad lists the last axis first
            pad += [s, n - s - k]
        y = nn.functional.pad(y, pad)
        if self.order > 1:  # even sizes (our FNO makes them even): fftshift is its own inverse
            y = torch.fft.ifftshift(y, dim=dims[:-1])
        out = torch.fft.irfftn(y, s=sizes, dim=dims, norm=self.fft_norm)
        return out if self.bias is None else out + self.bias


class FNO(nn.Module):
    """Conditioned Fourier neural operator on regular 1D or 2D grids.

    Args:
        in_channels, out_channels: channels of the input and output fields (from the data).
        n_dims: number of spatial axes, 1 or 2.
        cond_dim: length of the conditioning vector; 0 means no conditioning (and no
            conditioning parameters).
        periodic: the domain wraps around. If False, the lifted field is zero-padded by
            ``domain_padding`` of its size on every side so that the Fourier layers do not
            couple opposite walls.
        width: channels inside the Fourier blocks.
        modes: Fourier modes kept per axis (int or one per axis). As in neuraloperator, this
            is the total count of kept frequencies on a fully transformed axis (``modes // 2``
            negative and positive ones) and ``modes // 2 + 1`` non-negative ones on the last axis.
        n_layers: number of Fourier blocks.
        lifting_ratio, projection_ratio: hidden width of the pointwise lifting and projection
            MLPs as a multiple of ``width``.
        channel_mlp_expansion: hidden width of the MLP inside each block, relative to ``width``.
        domain_padding: fraction of each axis padded on both sides when not periodic.
        coordinates: append cell-centre coordinates as input channels; defaults to
            ``not periodic`` (positions matter near walls; a periodic problem is translation
            invariant and keeps exact equivariance without them).
        norm: normalisation inside the blocks (neuraloperator's ``None``, ``"group_norm"``,
            ``"instance_norm"``).
        embed_dim: size of the conditioning embedding.

    Shapes: ``x: (B, in_channels, *S)`` with ``len(S) == n_dims``, ``cond: (B, cond_dim)`` or
    None -> ``(B, out_channels, *S)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_dims: int,
        cond_dim: int = 0,
        *,
        periodic: bool = False,
        width: int = 32,
        modes: int | Sequence[int] = 16,
        n_layers: int = 4,
        lifting_ratio: float = 2.0,
        projection_ratio: float = 2.0,
        channel_mlp_expansion: float = 0.5,
        domain_padding: float = 0.125,
        coordinates: bool | None = None,
        norm: str | None = None,
        embed_dim: int = 128,
    ):
        super().__init__()
        if n_dims not in (1, 2):
            raise ValueError(f"FNO supports n_dims 1 or 2, got {n_dims}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be >= 1, got in={in_channels}, out={out_channels}")
        if cond_dim < 0:
            raise ValueError(f"cond_dim must be >= 0, got {cond_dim}")
        n_modes = [int(modes)] * n_dims if isinstance(modes, int) else [int(m) for m in modes]
        if len(n_modes) != n_dims or min(n_modes) < 1:
            raise ValueError(f"modes must be a positive int or {n_dims} positive ints, got {modes}")
        if not 0.0 <= domain_padding <= 1.0:
            raise ValueError(f"domain_padding must be in [0, 1], got {domain_padding}")

        self.in_channels, self.out_channels = in_channels, out_channels
        self.n_dims, self.cond_dim = n_dims, cond_dim
        self.periodic = periodic
        self.domain_padding = 0.0 if periodic else float(domain_padding)
        self.coordinates = (not periodic) if coordinates is None else bool(coordinates)

        lift_in = in_channels + (n_dims if self.coordinates else 0)
        self.lifting = ChannelMLP(
            lift_in, width, hidden_channels=round(lifting_ratio * width), n_dim=n_dims
        )
        self.blocks = FNOBlocks(
            width,
            width,
            n_modes,
            n_layers=n_layers,
            channel_mlp_expansion=channel_mlp_expansion,
            norm=norm,
            conv_module=Float32SpectralConv,
        )
        self.projection = ChannelMLP(
            width, out_channels, hidden_channels=round(projection_ratio * width), n_dim=n_dims
        )
        if cond_dim > 0:
            self.cond_embed = ConditionEmbedding(cond_dim, embed_dim)
            self.films = nn.ModuleList(FiLM(embed_dim, width) for _ in range(n_layers))
        else:
            self.cond_embed = None
            self.films = None

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != self.n_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"FNO expects x of shape (B, {self.in_channels}, *S) with {self.n_dims} spatial "
                f"dims, got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """x: (B, in_channels, *S); cond: (B, cond_dim) or None -> (B, out_channels, *S)."""
        self._check_input(x)
        check_cond(cond, self.cond_dim, x.shape[0])
        size = tuple(x.shape[2:])
        emb = self.cond_embed(cond) if self.cond_embed is not None else None

        if self.coordinates:
            grid = coordinate_channels(x.shape[0], size, device=x.device, dtype=x.dtype)
            x = torch.cat([x, grid], dim=1)
        h = self.lifting(x)

        # Bring every axis to an even length (see the module docstring), padding non-periodic
        # domains so that the spectral convolution does not wrap one wall onto the other.
        if self.periodic:
            even = tuple(n + n % 2 for n in size)
            h = fourier_resize(h, even)
            before = (0,) * self.n_dims
        else:
            before = tuple(round(self.domain_padding * n) for n in size)
            after = tuple(b + (n + 2 * b) % 2 for b, n in zip(before, size))
            h = pad_spatial(h, before, after, mode="constant")
        # neuraloperator's linear skip uses .view(), which fails on non-contiguous input (e.g.
        # after an FFT along a non-last axis).
        h = h.contiguous()

        for i in range(self.blocks.n_layers):
            h = self.blocks(h, index=i)
            if self.films is not None:
                h = self.films[i](h, emb)

        h = fourier_resize(h, size) if self.periodic else crop_spatial(h, before, size)
        return self.projection(h)
