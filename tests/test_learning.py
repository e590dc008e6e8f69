"""The networks learn what the notes say they can."""

import numpy as np

import xpmlp


def test_1_3_1_tanh_fits_sin_pi_x_on_50_points():
    x = np.linspace(-1, 1, 50)[:, None]
    t = np.sin(np.pi * x)
    net = xpmlp.MLP([1, 3, 1], "tanh", "identity", seed=0)
    history = net.fit(x, t, epochs=2000, batch_size=None, learning_rate=0.5)
    assert history["loss"][-1] < 1e-3 < history["loss"][0]
    assert np.max(np.abs(net.predict(x) - t)) < 0.1


def test_per_sample_updates_fit_sin_pi_x():
    x = np.linspace(-1, 1, 50)[:, None]
    t = np.sin(np.pi * x)
    net = xpmlp.MLP([1, 3, 1], "tanh", "identity", seed=0, dtype="float64")
    history = net.fit(x, t, epochs=300, batch_size=1, learning_rate=0.05)
    assert history["loss"][-1] < 2e-3


def test_xor_is_learned():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    T = np.array([[0], [1], [1], [0]], dtype=float)
    net = xpmlp.MLP([2, 4, 1], "tanh", "logistic", seed=0)
    net.fit(X, T, epochs=2000, batch_size=None, learning_rate=1.0)
    Y = net.predict(X)
    np.testing.assert_array_equal(Y > 0.5, T > 0.5)
    assert net.score(X, T) == 1.0


def test_softmax_separates_three_blobs_on_array_api_strict():
    rng = np.random.default_rng(0)
    centres = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    labels = rng.integers(0, 3, size=150)
    X = centres[labels] + 0.4 * rng.normal(size=(150, 2))
    T = np.eye(3)[labels]
    net = xpmlp.MLP([2, 8, 3], "relu", "softmax", backend="array_api_strict", seed=0)
    net.fit(X, T, epochs=30, batch_size=16, learning_rate=0.01, optimizer="adam")
    assert net.score(X, T) > 0.97
