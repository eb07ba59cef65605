"""Sharding the replica axis of a vmapped training over the local devices.

Replicas (seeds, targets) are independent, so a program vmapped over them splits across
devices with no communication: a one-axis ``jax.sharding.Mesh`` named ``"replica"``
over the devices, and every array whose leading axis is the replica axis placed with
``NamedSharding(mesh, PartitionSpec("replica"))``. ``jax.jit`` then compiles one
program per device that trains its block of replicas. R is padded up to a multiple of
the device count by repeating the last replica; the padding is dropped afterwards.

Reference: JAX documentation, "Distributed arrays and automatic parallelization"
(``jax.sharding.Mesh``, ``NamedSharding``).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from theory.validation import check_count

REPLICA_AXIS = "replica"
"""Name of the mesh axis that the replica axis is split over."""


def replica_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``"replica"`` over local devices.

    Args:
        devices: ``None`` for all local devices, an integer n for the first n of
            ``jax.local_devices()``, or an explicit sequence of devices.

    Returns:
        ``Mesh(devices, ("replica",))``.
    """
    available = jax.local_devices()
    if devices is None:
        chosen = available
    elif isinstance(devices, numbers.Integral) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices must be between 1 and {len(available)} (local devices), got {devices}")
        chosen = available[: int(devices)]
    elif isinstance(devices, Sequence) and devices and all(isinstance(d, jax.Device) for d in devices):
        chosen = list(devices)
    else:
        raise TypeError(f"devices must be None, an integer or a sequence of jax devices, got {devices!r}")
    return Mesh(np.array(chosen), (REPLICA_AXIS,))


def _leading_size(tree) -> int:
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_array)) if leaf.ndim}
    if len(sizes) != 1:
        raise ValueError(f"every array must share one leading replica axis, got leading sizes {sorted(sizes)}")
    return sizes.pop()


def padded_size(n_replicas: int, mesh: Mesh) -> int:
    """The smallest multiple of the mesh's device count that is >= ``n_replicas``."""
    return -(-n_replicas // mesh.size) * mesh.size


def pad_replicas(tree, size: int):
    """Extend the leading axis of every array in ``tree`` to ``size`` by repeating its last entry.

    Leaves without a leading axis (scalars) and non-array leaves are left unchanged.
    """
    n = _leading_size(tree)
    if size < n:
        raise ValueError(f"size must be >= the number of replicas {n}, got {size}")
    if size == n:
        return tree

    def pad(leaf):
        if not (eqx.is_array(leaf) and leaf.ndim):
            return leaf
        return jnp.concatenate([leaf, jnp.repeat(leaf[-1:], size - n, axis=0)], axis=0)

    return jax.tree.map(pad, tree)


def unpad_replicas(tree, n_replicas: int):
    """The first ``n_replicas`` entries of the leading axis of every array in ``tree``."""
    return jax.tree.map(lambda leaf: leaf[:n_replicas] if eqx.is_array(leaf) and leaf.ndim else leaf, tree)


def shard_replicas(tree, mesh: Mesh):
    """Place every array of ``tree`` with its leading axis split over ``mesh``'s ``"replica"`` axis.

    The leading size must be a multiple of the device count (see ``pad_replicas``).
    Scalars are replicated on every device.
    """
    n = _leading_size(tree)
    if n % mesh.size:
        raise ValueError(f"the replica axis ({n}) must be a multiple of the device count {mesh.size}; pad it first")
    split = NamedSharding(mesh, PartitionSpec(REPLICA_AXIS))
    whole = NamedSharding(mesh, PartitionSpec())

    def place(leaf):
        if not eqx.is_array(leaf):
            return leaf
        return jax.device_put(leaf, split if leaf.ndim else whole)

    return jax.tree.map(place, tree)


def mesh_for(devices: int) -> Mesh | None:
    """The mesh a ``--devices`` count asks for: 1 -> None (the plain single-device program),
    0 -> every local device, n -> the first n local devices."""
    check_count("devices (0: all local devices)", devices, minimum=0)
    if devices == 1:
        return None
    return replica_mesh(None if devices == 0 else int(devices))


def call_sharded(fn, *replicated, mesh: Mesh | None, **shared):
    """``fn(*replicated, **shared)`` with the replica axis of `replicated` split over `mesh`.

    Every array in the positional trees `replicated` carries the replica axis first (R);
    the keyword arguments `shared` (data common to every replica, specs, step counts) are
    passed unchanged. With a mesh, R is padded to a multiple of the device count
    (``pad_replicas``), placed with ``shard_replicas``, and every array of the output with
    a leading axis is cut back to R (``unpad_replicas``): `fn` must return replica-axis
    arrays only (and scalars). With ``mesh=None`` this is the plain call.

    `fn` is typically an ``eqx.filter_jit`` of an ``eqx.filter_vmap``: jit partitions the
    program by its inputs' shardings, so each device trains its own block of replicas.
    """
    if mesh is None:
        return fn(*replicated, **shared)
    n_replicas = _leading_size(replicated)
    placed = shard_replicas(pad_replicas(replicated, padded_size(n_replicas, mesh)), mesh)
    return unpad_replicas(fn(*placed, **shared), n_replicas)


@eqx.filter_jit
def _vmapped(fn, replicated, shared):
    return eqx.filter_vmap(lambda *one: fn(*one, **shared))(*replicated)


def vmap_sharded(fn, *replicated, mesh: Mesh | None, **shared):
    """``fn`` on every replica as one jitted, vmapped program, the replica axis split over `mesh`.

    ``vmap_sharded(fn, *replicated, mesh=mesh, **shared)[r] = fn(*replicated[r], **shared)``:
    the positional trees carry the replica axis first (vmapped over every array leaf),
    the keyword arguments are common to every replica (specs, step counts, a shared law).
    Pass a module-level `fn` so that calls reuse one compilation. Sharding as in
    ``call_sharded``; ``mesh=None`` is the plain single-device program.
    """
    return call_sharded(lambda *r, **s: _vmapped(fn, r, s), *replicated, mesh=mesh, **shared)
