"""nmcompile.nn modules: MPBNLIF becomes an IR MPBNLIF node, folded later by `fold_mpbn`."""

from __future__ import annotations

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.frontend.lowering import Lowered, prov, register, tensor
from nmcompile.ir import ops as O
from nmcompile.nn import MPBNLIF


def _bn_shape(m: MPBNLIF, shape, path: str) -> tuple[int, ...]:
    if m.elementwise:
        if int(np.prod(shape)) != m.num_features:
            raise UnsupportedError(f"module '{path}': element-wise MPBN has {m.num_features} features but the layer "
                                   f"has shape {shape}")
        return tuple(shape)
    return (m.num_features,) + (1,) * (len(shape) - 1)


@register(MPBNLIF, "nmcompile", neuron=True)
def _mpbn(m: MPBNLIF, path, in_shape, out_shape) -> Lowered:
    bshape = _bn_shape(m, in_shape, path)

    def bn(t) -> np.ndarray:
        return tensor(t).reshape(bshape)

    return Lowered.single(O.MPBNLIF(
        shape=in_shape, beta=float(m.beta), threshold=float(m.threshold), reset_mode=m.reset,
        reset_amount=float(m.reset_amount), bn_mean=bn(m.running_mean), bn_var=bn(m.running_var),
        bn_weight=bn(m.weight), bn_bias=bn(m.bias), bn_eps=float(m.eps), provenance=prov("nmcompile", path)))


def reset_states(model) -> None:
    for module in model.modules():
        if isinstance(module, MPBNLIF):
            module.reset_state()
