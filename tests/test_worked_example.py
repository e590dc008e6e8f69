"""The notes' two-layer network on hand-chosen numbers, computed index by index.

The reference below uses only Python floats and the scalar formulas of the notes
(a_j = sum_i w_ji x_i with x_0 = 1, z_j = tanh(a_j), y_k = a_k, delta_k = y_k - t_k,
delta_j = (1 - z_j^2) sum_k w_kj delta_k, dE/dw_ji = delta_j x_i, w <- w - eta dE/dw),
independently of xpmlp's vectorised code.
"""

import math

import numpy as np
import pytest

import xpmlp
from xpmlp import network
from xpmlp.activations import get_activation
from xpmlp.objectives import get_output

x = [0.5, -1.0]  # D = 2
t = [0.25, -0.5]  # K = 2
W1 = [[0.1, 0.2, -0.3], [-0.4, 0.5, 0.6], [0.3, -0.2, 0.1]]  # M x (D+1) = 3 x 3
W2 = [[0.7, -0.8, 0.9, 0.2], [-0.1, 0.4, -0.6, 0.5]]  # K x (M+1) = 2 x 4
eta = 0.1


def notes_reference():
    xs = [1.0, *x]  # x_0 = 1
    a1 = [sum(W1[j][i] * xs[i] for i in range(3)) for j in range(3)]
    z = [math.tanh(a) for a in a1]
    zs = [1.0, *z]  # z_0 = 1
    a2 = [sum(W2[k][j] * zs[j] for j in range(4)) for k in range(2)]
    y = a2  # identity output
    d2 = [y[k] - t[k] for k in range(2)]
    d1 = [(1 - z[j] ** 2) * sum(W2[k][j + 1] * d2[k] for k in range(2)) for j in range(3)]
    g1 = [[d1[j] * xs[i] for i in range(3)] for j in range(3)]
    g2 = [[d2[k] * zs[j] for j in range(4)] for k in range(2)]
    E = 0.5 * sum((y[k] - t[k]) ** 2 for k in range(2))
    new1 = [[W1[j][i] - eta * g1[j][i] for i in range(3)] for j in range(3)]
    new2 = [[W2[k][j] - eta * g2[k][j] for j in range(4)] for k in range(2)]
    return dict(a1=a1, z=z, a2=a2, y=y, d2=d2, d1=d1, g1=g1, g2=g2, E=E, new1=new1, new2=new2)


def test_hand_numbers_of_the_first_layer():
    ref = notes_reference()
    # a_1 = 0.1 + 0.2 * 0.5 + (-0.3)(-1) = 0.5; a_2 = -0.4 + 0.25 - 0.6 = -0.75;
    # a_3 = 0.3 - 0.1 - 0.1 = 0.1
    assert ref["a1"] == pytest.approx([0.5, -0.75, 0.1], abs=1e-15)


def make_net():
    net = xpmlp.MLP([2, 3, 2], activation="tanh", output="identity", dtype="float64")
    net.weights = [np.array(W1), np.array(W2)]
    return net


def test_forward_backward_match_the_notes_entry_by_entry():
    ref = notes_reference()
    net = make_net()
    X, T = np.array([x]), np.array([t])
    cache = net.forward(X)
    np.testing.assert_allclose(cache.A[0][0], ref["a1"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(cache.Z[1][0], ref["z"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(cache.A[1][0], ref["a2"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(net.predict(X)[0], ref["y"], rtol=0, atol=1e-15)
    deltas, grads = network.backward(net.weights, cache, T, activation=net.activation, xp=net.xp)
    np.testing.assert_allclose(deltas[1][0], ref["d2"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(deltas[0][0], ref["d1"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(grads[0], ref["g1"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(grads[1], ref["g2"], rtol=0, atol=1e-15)
    loss, grads2 = net.loss_and_gradients(X, T)
    assert loss == pytest.approx(ref["E"], abs=1e-15)
    for G, G2 in zip(grads, grads2):
        np.testing.assert_array_equal(G, G2)


def test_one_per_sample_update_is_the_notes_rule():
    ref = notes_reference()
    net = make_net()
    net.fit(np.array([x]), np.array([t]), epochs=1, batch_size=1, learning_rate=eta)
    np.testing.assert_allclose(net.weights[0], ref["new1"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(net.weights[1], ref["new2"], rtol=0, atol=1e-15)


def test_batch_gradient_is_the_mean_of_per_sample_gradients():
    rng = np.random.default_rng(1)
    X, T = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    net = make_net()
    loss, grads = net.loss_and_gradients(X, T)
    per_sample = [net.loss_and_gradients(X[n : n + 1], T[n : n + 1]) for n in range(5)]
    assert loss == pytest.approx(np.mean([L for L, _ in per_sample]), rel=1e-14)
    for l in range(2):
        mean = np.mean([g[l] for _, g in per_sample], axis=0)
        np.testing.assert_allclose(grads[l], mean, rtol=1e-13, atol=1e-15)
    # backward's deltas are those of the mean loss: N times them are the notes' deltas
    cache = net.forward(X)
    deltas, _ = network.backward(net.weights, cache, T, activation=net.activation, xp=net.xp)
    np.testing.assert_allclose(5 * deltas[1], cache.Z[2] - T, rtol=1e-14)


def test_functional_layer_matches_the_model():
    net = make_net()
    X = np.array([x, [0.0, 1.0]])
    cache = xpmlp.forward(
        net.weights,
        X,
        activation=get_activation("tanh"),
        output=get_output("identity"),
        xp=net.xp,
    )
    np.testing.assert_array_equal(cache.Z[-1], net.predict(X))
    assert [W.shape for W in net.weights] == [(3, 3), (2, 4)]  # M x (D+1), K x (M+1)
