"""Tests for models/training.py: the loop against closed-form iterates (gradient descent
on a quadratic, Adam on a linear loss), the moving average against its closed form,
recording, continuation, replicas under vmap, divergence, batch sources and settings.

Float32 tolerances are stated in units of u = 2^-24 (float32's unit roundoff) and
derived in each test; where every number involved is a short dyadic fraction the
float32 arithmetic is exact and the check is equality.
"""

import math
from types import SimpleNamespace

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from models.critics import AbstractCriticSpec
from models.training import (
    EMA,
    AbstractTraining,
    AdamSpec,
    FiniteSample,
    FreshDraws,
    IndependentDraws,
    TrainState,
    check_adam_settings,
    check_real,
    init_train_state,
    run_in_chunks,
    scan_steps,
    train,
)

U = 2.0**-24  # float32 unit roundoff


class Point(eqx.Module):
    """The simplest model: a parameter vector theta."""

    theta: jax.Array


def point(*values) -> Point:
    return Point(jnp.asarray(values, jnp.float32))


def constant(value, key, n):
    """A 'sampler' that ignores its key: every batch is `value`."""
    del key, n
    return value


def quadratic_loss(model: Point, centre) -> jax.Array:
    """L(theta) = 1/2 sum_j a_j (theta_j - c_j)^2 with a = (1, 1/2)."""
    curvature = jnp.asarray([1.0, 0.5], jnp.float32)
    return 0.5 * jnp.sum(curvature * (model.theta - centre) ** 2)


def linear_loss(model: Point, gradient) -> jax.Array:
    """L(theta) = <g, theta>: a constant gradient g."""
    return jnp.sum(gradient * model.theta)


CENTRE = FreshDraws(eqx.Partial(constant, jnp.zeros(2, jnp.float32)), 1)
LEARNING_RATE = 0.5
CURVATURE = np.asarray([1.0, 0.5])


def _quadratic_iterates(n_steps: int) -> np.ndarray:
    """theta_k = (1 - lr a)^k theta_0 for gradient descent on the quadratic, float64."""
    return (1.0 - LEARNING_RATE * CURVATURE)[None, :] ** np.arange(n_steps + 1)[:, None] * np.asarray([1.0, 1.0])


@pytest.mark.parametrize("record_every", [1, 4, 12])
def test_gradient_descent_on_a_quadratic_follows_the_closed_form(record_every, key):
    # theta_{k+1} = theta_k - lr a (theta_k - c) = (1 - lr a)^{k+1} theta_0 with c = 0,
    # lr a = (1/2, 1/4): the iterates (1/2)^k and (3/4)^k = 3^k / 4^k are exact in float32
    # for k <= 15 (3^15 < 2^24) and so is every product formed on the way, so the final
    # iterate must match exactly. The recorded loss is the mean over each block of
    # L(theta_k) = 1/2 sum a theta_k^2 (evaluated before step k's update); its float32
    # value carries at most ~8 roundings (square, scale, sum, mean of <= 12 terms and the
    # sum's accumulation), so rtol = 16 u bounds it.
    n_steps = 12
    result = train(point(1.0, 1.0), quadratic_loss, optimiser=optax.sgd(LEARNING_RATE), batches=CENTRE,
                   n_steps=n_steps, key=key, record_every=record_every)
    iterates = _quadratic_iterates(n_steps)
    np.testing.assert_array_equal(np.asarray(result.model.theta, np.float64), iterates[-1])
    per_step = 0.5 * np.sum(CURVATURE * iterates[:-1] ** 2, axis=1)
    expected = per_step.reshape(-1, record_every).mean(axis=1)
    assert result.losses.shape == result.steps.shape == (n_steps // record_every,)
    assert result.steps.tolist() == list(range(record_every, n_steps + 1, record_every))
    np.testing.assert_allclose(np.asarray(result.losses, np.float64), expected, rtol=16 * U, atol=0)
    assert result.losses.dtype == jnp.float32
    assert int(result.state.step) == n_steps and int(result.diverged_at) == -1


@pytest.mark.parametrize("clip_norm", [None, 1.0])
def test_adam_on_a_linear_loss_takes_constant_normalised_steps(clip_norm, key):
    # With a constant gradient g the bias-corrected moments are m^ = g and v^ = g^2 at
    # every step (Kingma & Ba 2015, Alg. 1), so theta_k = theta_0 - k lr g / (|g| + eps).
    # Clipping at norm c first replaces g by g c / ||g||; eps = 1 makes the step depend
    # on the gradient's scale, so the clipped and unclipped runs differ (g = (3, 4),
    # ||g|| = 5). Float32 error: m^ and v^ after j steps carry O(j) roundings each (the
    # moment recursions and 1 - b^j), so step j is off by at most ~10 j u relative and
    # the sum over n = 20 steps by lr * 10 u * n^2 / 2 = 2000 lr u; the n additions to
    # theta add n u |theta| <= 20 u * 2. Together: atol = 2000 lr u + 40 u.
    gradient = np.asarray([3.0, 4.0])
    lr, eps, n_steps = 0.01, 1.0, 20
    spec = AdamSpec(lr, eps=eps, clip_norm=clip_norm)
    batches = FreshDraws(eqx.Partial(constant, jnp.asarray(gradient, jnp.float32)), 1)
    result = train(point(1.0, -1.0), linear_loss, optimiser=spec, batches=batches, n_steps=n_steps, key=key,
                   record_every=n_steps)
    effective = gradient if clip_norm is None else gradient * clip_norm / np.linalg.norm(gradient)
    expected = np.asarray([1.0, -1.0]) - n_steps * lr * effective / (np.abs(effective) + eps)
    np.testing.assert_allclose(np.asarray(result.model.theta, np.float64), expected, rtol=0,
                               atol=2000 * lr * U + 40 * U)


def test_moving_average_of_a_constant_sequence_has_its_closed_form():
    # e_k = d e_{k-1} + (1 - d) c = c + d^k (e_0 - c). Float32: each update adds <= 3 u M
    # of rounding (M = max(|c|, |e_0|)) and earlier errors shrink by d, so the error stays
    # below 3 u M / (1 - d) = 30 u M for d = 0.9.
    ema = EMA(0.9)
    constant_params, start = jnp.asarray([2.0, -3.0], jnp.float32), jnp.asarray([0.0, 5.0], jnp.float32)

    def step(average, _):
        average = ema.update(average, constant_params)
        return average, average

    _, averages = jax.lax.scan(step, start, None, length=50)
    k = np.arange(1, 51)[:, None]
    expected = np.asarray(constant_params, np.float64) + 0.9**k * (np.asarray(start, np.float64) - np.asarray(constant_params, np.float64))
    np.testing.assert_allclose(np.asarray(averages, np.float64), expected, rtol=0, atol=30 * U * 5.0)


def test_moving_average_in_the_loop_tracks_gradient_descent_on_a_linear_loss(key):
    # SGD on <g, theta>: theta_k = theta_0 - k lr g. The average e_k = d e_{k-1} + (1 - d) theta_k,
    # e_0 = theta_0, is e_k = theta_0 - lr g s_k with s_k = d s_{k-1} + (1 - d) k, s_0 = 0, i.e.
    # s_k = k - d (1 - d^k) / (1 - d). With d = 1/2, lr g = 1/4 every value is a dyadic
    # fraction with fewer than 24 significant bits for k <= 12, so float32 is exact.
    d, n_steps = 0.5, 12
    batches = FreshDraws(eqx.Partial(constant, jnp.asarray([1.0, -2.0], jnp.float32)), 1)
    result = train(point(1.0, 1.0), linear_loss, optimiser=optax.sgd(0.25), batches=batches, n_steps=n_steps,
                   key=key, record_every=n_steps, ema=EMA(d))
    s = n_steps - d * (1 - d**n_steps) / (1 - d)
    np.testing.assert_array_equal(np.asarray(result.model.theta, np.float64), [1.0 - 3.0, 1.0 + 6.0])
    np.testing.assert_array_equal(np.asarray(result.ema_model.theta, np.float64),
                                  [1.0 - 0.25 * s, 1.0 + 0.5 * s])


def test_continuing_from_a_state_equals_one_run(key):
    # The batches ignore their keys, so 4 steps then 8 more from the returned state must
    # reproduce 12 steps bit for bit, with the step count carried on.
    settings = dict(optimiser=AdamSpec(0.1), batches=CENTRE, record_every=4, ema=EMA(0.9))
    whole = train(point(1.0, 1.0), quadratic_loss, n_steps=12, key=key, **settings)
    first = train(point(1.0, 1.0), quadratic_loss, n_steps=4, key=key, **settings)
    rest = train(first.state, quadratic_loss, n_steps=8, key=key, **settings)
    assert eqx.tree_equal(whole.state, rest.state)
    assert rest.steps.tolist() == [8, 12]
    np.testing.assert_array_equal(np.concatenate([first.losses, rest.losses]), whole.losses)
    with pytest.raises(ValueError, match="ema must match the state being continued"):
        train(first.state, quadratic_loss, n_steps=4, key=key, optimiser=AdamSpec(0.1), batches=CENTRE,
              record_every=4)


def least_squares_loss(model: eqx.nn.MLP, batch) -> jax.Array:
    x, y = batch
    return jnp.mean((jax.vmap(model)(x)[:, 0] - y) ** 2)


def test_vmapped_replicas_equal_separate_runs(key):
    # Three replicas, each its own initial network, key and data set, trained as one
    # vmapped program; each must equal its own unbatched run. Every replica runs the same
    # operations on its own numbers, but a batched matrix product may round differently
    # (observed: at most 2 u relative on the parameters). A relative perturbation delta
    # of a gradient moves Adam's step m^ / sqrt(v^) (of size ~lr) by ~lr delta, and the
    # loss feeds it back into later gradients; over 30 steps we allow 240 u (1.4e-5),
    # relative and absolute, which still catches any replica reading another's data or
    # key (those change the numbers at order 1e-2).
    key_init, key_data, key_train = jax.random.split(key, 3)
    replicas = 3
    networks = [eqx.nn.MLP(2, 1, 8, 1, dtype=jnp.float32, key=k) for k in jax.random.split(key_init, replicas)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves) if eqx.is_array(leaves[0]) else leaves[0], *networks)
    x = jax.random.normal(key_data, (replicas, 64, 2), jnp.float32)
    y = jnp.sin(x[..., 0]) + x[..., 1] ** 2
    keys = jax.random.split(key_train, replicas)

    def run(model, data_x, data_y, run_key):
        return train(model, least_squares_loss, optimiser=AdamSpec(1e-2), batches=FiniteSample((data_x, data_y), 16),
                     n_steps=30, key=run_key, record_every=10)

    together = eqx.filter_vmap(run)(stacked, x, y, keys)
    assert together.losses.shape == (replicas, 3)
    tolerance = 240 * U
    for r in range(replicas):
        alone = run(networks[r], x[r], y[r], keys[r])
        np.testing.assert_allclose(together.losses[r], alone.losses, rtol=tolerance)
        for a, b in zip(jax.tree.leaves(eqx.filter(together.model, eqx.is_array)),
                        jax.tree.leaves(eqx.filter(alone.model, eqx.is_array))):
            np.testing.assert_allclose(a[r], b, rtol=tolerance, atol=tolerance)
    # Not vacuous: every replica's weights moved (30 Adam steps of ~1e-2 each).
    before = jax.tree.leaves(eqx.filter(stacked, eqx.is_array))[0]
    after = jax.tree.leaves(eqx.filter(together.model, eqx.is_array))[0]
    assert np.all(np.max(np.abs(np.asarray(after - before)), axis=(1, 2)) > 1e-2)


def log_barrier_loss(model: Point, wall) -> jax.Array:
    """-theta (1 + 0 log(wall - theta)): gradient -1 everywhere, NaN once theta > wall."""
    theta = model.theta[0]
    return -theta * (1.0 + 0.0 * jnp.log(wall - theta))


def test_divergence_is_flagged_at_its_step_and_other_replicas_are_unaffected(key):
    # SGD with lr 1 on a loss of gradient -1 moves theta_k = theta_0 + k. With the wall at
    # 5.5, the replica started at 0 first evaluates a NaN loss at theta_6 = 6, step index 6;
    # the one started at -100 never reaches the wall in 12 steps. Both run all 12 steps.
    wall = FreshDraws(eqx.Partial(constant, jnp.float32(5.5)), 1)
    starts = Point(jnp.asarray([[0.0], [-100.0]], jnp.float32))

    def run(model, run_key):
        return train(model, log_barrier_loss, optimiser=optax.sgd(1.0), batches=wall, n_steps=12, key=run_key,
                     record_every=3)

    keys = jax.random.split(key, 2)
    result = eqx.filter_vmap(run)(starts, keys)
    assert result.diverged_at.tolist() == [6, -1]
    assert result.state.step.tolist() == [12, 12]
    # Blocks of 3: steps 0-2 and 3-5 finite for the diverging replica, NaN from step 6 on.
    assert np.all(np.isfinite(result.losses[0, :2])) and np.all(np.isnan(result.losses[0, 2:]))
    alone = run(Point(jnp.asarray([-100.0], jnp.float32)), keys[1])
    assert eqx.tree_equal(jax.tree.map(lambda leaf: leaf[1], result.state), alone.state)
    np.testing.assert_array_equal(result.losses[1], alone.losses)
    assert float(alone.model.theta[0]) == -100.0 + 12


def sqrt_loss(model: Point, _) -> jax.Array:
    """sqrt(theta): finite at theta = 0 but with an infinite gradient there."""
    return jnp.sqrt(model.theta[0])


def test_divergence_of_the_parameters_is_flagged_even_when_the_loss_is_finite(key):
    # Loss 0 at theta_0 = 0 but gradient +inf, so theta_1 = -inf: step 0 diverged.
    result = train(point(0.0), sqrt_loss, optimiser=optax.sgd(0.1), batches=CENTRE, n_steps=2, key=key,
                   record_every=1)
    assert float(result.losses[0]) == 0.0
    assert int(result.diverged_at) == 0


def test_finite_sample_draws_rows_uniformly_with_replacement(key):
    # Each of the 4 rows' count among n = 40,000 draws is Binomial(n, 1/4):
    # |count / n - 1/4| <= 5 sqrt(p (1 - p) / n) fails with probability 5.7e-7 per row.
    data = jnp.asarray([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]], jnp.float32)
    n = 40_000
    batch = np.asarray(FiniteSample(data, n).draw(key))
    assert batch.shape == (n, 2)
    rows = batch[:, 0] / 2
    assert np.all(batch[:, 1] == batch[:, 0] + 1) and set(np.unique(rows)) == {0.0, 1.0, 2.0, 3.0}
    counts = np.bincount(rows.astype(int), minlength=4)
    assert np.all(np.abs(counts / n - 0.25) <= 5 * math.sqrt(0.25 * 0.75 / n)), counts
    # A pytree of arrays is indexed jointly (pairs stay pairs).
    x, y = FiniteSample((data[:, 0], data[:, 1]), 100).draw(key)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x) + 1)


def test_fresh_draws_call_the_sampler_with_the_key_and_batch_size(key):
    batches = FreshDraws(lambda k, n: jax.random.normal(k, (n, 3)), 7)
    np.testing.assert_array_equal(batches.draw(key), jax.random.normal(key, (7, 3)))


def test_independent_draws_split_the_step_key_once_and_append_the_loss_key(key):
    normal = FreshDraws(lambda k, n: jax.random.normal(k, (n,)), 3)
    uniform = FreshDraws(lambda k, n: jax.random.uniform(k, (n,)), 2)
    k_normal, k_uniform, k_loss = jax.random.split(key, 3)
    x, y, spare = IndependentDraws((normal, uniform)).draw(key)
    np.testing.assert_array_equal(x, jax.random.normal(k_normal, (3,)))
    np.testing.assert_array_equal(y, jax.random.uniform(k_uniform, (2,)))
    np.testing.assert_array_equal(jax.random.key_data(spare), jax.random.key_data(k_loss))
    (only,) = IndependentDraws((normal,), loss_key=False).draw(key)
    np.testing.assert_array_equal(only, jax.random.normal(jax.random.split(key, 1)[0], (3,)))


def _sum_as_aux(model: Point, centre):
    return quadratic_loss(model, centre), jnp.sum(model.theta)


def _project_above_five_eighths(model: Point, previous: Point, batch) -> Point:
    del previous, batch
    return Point(jnp.maximum(model.theta, 0.625))


def test_after_step_projects_every_iterate_and_aux_is_recorded_per_step(key):
    # Projected gradient descent on the quadratic (lr a = (1/2, 1/4)) onto theta >= 5/8:
    # theta_1 = P(1/2, 3/4) = (5/8, 3/4), theta_2 = P(5/16, 9/16) = (5/8, 5/8), theta_3 =
    # P(5/16, 15/32) = (5/8, 5/8). Every number is a short dyadic fraction, so float32 is
    # exact and the checks are equalities. The aux sum(theta_k) is read before step k's
    # update: 2, 11/8, 5/4.
    result = train(point(1.0, 1.0), _sum_as_aux, optimiser=optax.sgd(LEARNING_RATE), batches=CENTRE, n_steps=3,
                   key=key, record_every=1, has_aux=True, after_step=_project_above_five_eighths)
    np.testing.assert_array_equal(np.asarray(result.model.theta), [0.625, 0.625])
    np.testing.assert_array_equal(np.asarray(result.aux), [2.0, 1.375, 1.25])
    assert train(point(1.0, 1.0), quadratic_loss, optimiser=optax.sgd(LEARNING_RATE), batches=CENTRE, n_steps=3,
                 key=key, record_every=1).aux is None


class Scaled(eqx.Module):
    """A state with a non-array leaf (a function), which a plain lax.scan could not carry."""

    theta: jax.Array
    activation: object = eqx.field(static=False, default=jnp.tanh)


def test_scan_steps_carries_the_arrays_and_equals_a_python_loop():
    # state_{k+1} = activation(state_k) + x_k: the same float32 operations in the same
    # order inside and outside the scan, so the results are equal, not just close.
    def step(state, x):
        new = eqx.tree_at(lambda s: s.theta, state, state.activation(state.theta) + x)
        return new, jnp.sum(new.theta)

    xs = jnp.arange(12, dtype=jnp.float32).reshape(4, 3) / 8
    start = Scaled(jnp.array([0.5, -1.0, 2.0], jnp.float32))
    end, records = scan_steps(step, start, xs)
    state, expected = start, []
    for x in xs:
        state, record = step(state, x)
        expected.append(record)
    assert end.activation is jnp.tanh
    np.testing.assert_array_equal(end.theta, state.theta)
    np.testing.assert_array_equal(records, jnp.stack(expected))


def test_run_in_chunks_visits_every_boundary_and_equals_one_run(key):
    settings = dict(optimiser=optax.sgd(LEARNING_RATE), batches=CENTRE, record_every=4)

    def advance(state, start, stop):
        result = train(state, quadratic_loss, n_steps=stop - start, key=key, **settings)
        return result.state, result.losses

    seen = []
    state = init_train_state(point(1.0, 1.0), optimiser=settings["optimiser"])
    state, records = run_in_chunks(advance, state, [0, 4, 12, 12],
                                   on_boundary=lambda s, stop, record: seen.append((stop, record is None)))
    assert seen == [(0, True), (4, False), (12, False), (12, True)]
    assert [stop for stop, _ in records] == [4, 12]
    whole = train(point(1.0, 1.0), quadratic_loss, n_steps=12, key=key, **settings)
    assert eqx.tree_equal(state, whole.state)
    np.testing.assert_array_equal(np.concatenate([r for _, r in records]), whole.losses)
    with pytest.raises(ValueError, match="boundaries must be nondecreasing"):
        run_in_chunks(advance, state, [4, 2])


def test_run_in_chunks_runs_the_host_rest_while_the_next_chunk_trains():
    """on_boundary's returned callable runs after the next chunk is dispatched and before
    the next boundary, so side effects keep their order; the last one runs at the end."""
    events = []

    def advance(state, start, stop):
        events.append(f"advance {stop}")
        return state + 1, None

    def on_boundary(state, stop, record):
        events.append(f"device {stop}")
        return lambda: events.append(f"host {stop}")

    run_in_chunks(advance, 0, [0, 4, 8], on_boundary=on_boundary)
    assert events == ["device 0", "advance 4", "host 0", "device 4", "advance 8", "host 4", "device 8", "host 8"]
    with pytest.raises(TypeError, match="on_boundary must return None or a callable"):
        run_in_chunks(advance, 0, [0, 4], on_boundary=lambda state, stop, record: 3)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: AdamSpec(0.0), ValueError, "learning_rate must be a finite number > 0, got 0.0"),
        (lambda: AdamSpec(b1=1.0), ValueError, r"b1 must be a finite number in \[0, 1\), got 1.0"),
        (lambda: AdamSpec(b2=True), TypeError, "b2 must be a finite number"),
        (lambda: AdamSpec(clip_norm=-1.0), ValueError, "clip_norm must be a finite number > 0"),
        (lambda: EMA(1.0), ValueError, r"decay must be a finite number in \(0, 1\), got 1.0"),
        (lambda: EMA(0.0), ValueError, "decay"),
        (lambda: FiniteSample(jnp.zeros((0, 2)), 4), ValueError, "data must have shape"),
        (lambda: FiniteSample(jnp.zeros((3, 2)), 0), ValueError, "batch_size must be an integer >= 1, got 0"),
        (lambda: FreshDraws("normal", 4), TypeError, "sample must be callable"),
        (lambda: check_real("x", float("nan")), ValueError, "x must be a finite number, got nan"),
        (lambda: check_adam_settings(SimpleNamespace(lr=0.0), rates=("lr",), decays=()), ValueError,
         "lr must be a finite number > 0, got 0.0"),
        (lambda: check_adam_settings(SimpleNamespace(b1=1.0), rates=(), decays=("b1",)), ValueError,
         r"b1 must be a finite number in \[0, 1\), got 1.0"),
        (lambda: check_adam_settings(SimpleNamespace(steps=0), rates=(), decays=(), counts=("steps",)), ValueError,
         "steps must be an integer >= 1, got 0"),
        # A bool is not a count: a TypeError, as from theory.validation.check_count everywhere.
        (lambda: check_adam_settings(SimpleNamespace(steps=True), rates=(), decays=(), counts=("steps",)), TypeError,
         "steps must be an integer >= 1, got True"),
    ],
)
def test_settings_reject_bad_values(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"n_steps": 10, "record_every": 4}, ValueError, "record_every must divide n_steps=10, got 4"),
        ({"n_steps": 0}, ValueError, "n_steps must be an integer >= 1, got 0"),
        ({"optimiser": "adam"}, TypeError, "optimiser must be an AbstractOptimiserSpec"),
        ({"batches": jnp.zeros((3, 2))}, TypeError, "batches must be an AbstractBatchSource"),
        ({"ema": 0.9}, TypeError, "ema must be an EMA or None"),
        ({"model": Point(jnp.ones(2, jnp.float64))}, ValueError, "model parameters must be float32"),
        ({"loss_fn": None}, TypeError, "loss_fn must be callable"),
        ({"key": None}, ValueError, "key must be a JAX PRNG key"),
        ({"has_aux": 1}, TypeError, "has_aux must be a bool, got 1"),
        ({"after_step": 3}, TypeError, "after_step must be None or callable"),
    ],
)
def test_train_rejects_bad_arguments_before_compute(overrides, error, match, key):
    arguments = dict(model=point(1.0, 1.0), loss_fn=quadratic_loss, optimiser=AdamSpec(), batches=CENTRE,
                     n_steps=4, key=key, record_every=2)
    arguments.update(overrides)
    model, loss_fn = arguments.pop("model"), arguments.pop("loss_fn")
    with pytest.raises(error, match=match):
        train(model, loss_fn, **arguments)


def test_init_train_state_starts_at_step_zero_with_the_average_at_the_model():
    state = init_train_state(point(1.0, 2.0), optimiser=AdamSpec(), ema=EMA(0.9))
    assert isinstance(state, TrainState)
    assert int(state.step) == 0 and int(state.diverged_at) == -1
    assert eqx.tree_equal(state.ema_model, state.model)


def test_abstract_fields_are_enforced():
    # AbstractTraining and AbstractCriticSpec declare their fields as eqx.AbstractVar; the
    # modules must not use postponed annotations, under which equinox reads them as plain
    # fields and a subclass that leaves one out would still build.
    class NoSteps(AbstractTraining):
        optimiser: AdamSpec = eqx.field(static=True, default=AdamSpec(1e-3))
        batch_size: int = eqx.field(static=True, default=2)
        record_every: int = eqx.field(static=True, default=1)
        ema: EMA | None = eqx.field(static=True, default=None)

    with pytest.raises(TypeError, match="abstract attributes {'steps'}"):
        NoSteps()

    class NoWidth(AbstractCriticSpec):
        depth: int = 2

        def build(self, key, in_dim):
            raise NotImplementedError

        def project(self, critic):
            return critic

    with pytest.raises(TypeError, match="abstract attributes {'width'}"):
        NoWidth()
