"""The run handle for people, `aelab.load(run)`: encode, decode, reconstruct and sample take
images and codes as people hold them (numpy or torch, uint8 or float, several layouts) and
refuse the rest with an AelabError that says what was given and what is expected."""

import numpy as np
import pytest
import torch

import aelab
from aelab.data import load_dataset
from aelab.data.batches import encode_all, sample_codes, to_float
from aelab.errors import AelabError
from aelab.runs import LoadedRun, load_run

N = 5


@pytest.fixture(scope="session")
def vae_run(tmp_path_factory, mnist_dir):
    """A real one-epoch VAE on 256 images (seconds)."""
    from aelab.config import TrainConfig
    from aelab.train import train

    run = tmp_path_factory.getbasetemp() / "handle-vae"
    if not (run / "checkpoints" / "best.safetensors").is_file():
        cfg = TrainConfig(model="vae", epochs=1, limit=256, device="cpu")
        train(cfg, run, data_dir=mnist_dir, log=lambda _msg: None, progress=False)
    return run


@pytest.fixture(scope="module")
def test_u8(mnist_dir):
    x, _ = load_dataset("mnist", "test", mnist_dir, log=lambda *_: None)
    return x[:N]  # uint8 (N, 28, 28)


@pytest.fixture(scope="module", params=["linear", "conv"])
def run(request, seed_runs, mnist_dir):
    return load_run(seed_runs[request.param], data_dir=mnist_dir)


def _forms(u8: torch.Tensor) -> dict:
    """Every accepted form of the same N images."""
    f = u8.float() / 255  # (N, 28, 28)
    forms = {"u8 torch": u8, "u8 numpy": u8.numpy(), "u8 (N,1,28,28)": u8[:, None],
             "u8 (N,784)": u8.reshape(N, 784).numpy(),
             "f32 torch": f, "f32 numpy": f.numpy(), "f64 numpy": f.double().numpy(),
             "f16 torch": f.half(), "(N,1,28,28)": f[:, None], "(N,784) numpy": f.reshape(N, 784).numpy(),
             "read-only numpy": f.numpy().copy(), "reversed numpy": f.numpy()[::-1][::-1]}
    forms["read-only numpy"].setflags(write=False)
    return forms


# --- what goes in, what comes out -------------------------------------------------------


def test_load_gives_the_handle_with_the_old_fields(seed_runs):
    run = aelab.load(seed_runs["conv"])
    assert isinstance(run, LoadedRun)
    assert run.config.model == "conv" and run.meta["epoch"] == 1 and run.run_dir == seed_runs["conv"]
    assert not run.model.training and run.latent_dim == 64 and not run.variational


def test_every_input_form_gives_the_same_reconstruction(run, test_u8):
    want = run.model(to_float(test_u8)).detach()  # (N, 1, 28, 28): the model by hand
    for name, x in _forms(test_u8).items():
        got = run.reconstruct(x)
        assert got.shape == x.shape, name
        assert isinstance(got, np.ndarray) == isinstance(x, np.ndarray), name
        assert got.dtype in (np.float32, torch.float32), name
        tol = 2e-3 if name == "f16 torch" else 1e-6  # the half-precision input rounds
        assert torch.allclose(torch.as_tensor(got).reshape(N, 1, 28, 28), want, atol=tol), name


def test_uint8_and_float_over_255_agree_and_differ_between_images(run, test_u8):
    a = run.reconstruct(test_u8.numpy())
    b = run.reconstruct(test_u8.numpy().astype(np.float32) / 255)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert np.abs(a[0] - a[1]).max() > 1e-3  # reconstructions depend on the input
    assert a.min() >= 0 and a.max() <= 1


def test_one_image_keeps_its_shape_and_matches_the_batch(run, test_u8):
    batch = run.reconstruct(test_u8)
    one = run.reconstruct(test_u8[2])  # (28, 28)
    assert one.shape == (28, 28)
    torch.testing.assert_close(one, batch[2])
    flat = run.encode(test_u8[2].reshape(784).numpy())  # (784,) -> one code
    assert flat.shape == (run.latent_dim,)
    np.testing.assert_allclose(flat, run.encode(test_u8.numpy())[2], rtol=1e-5, atol=1e-5)


def test_encode_then_decode_is_reconstruct(run, test_u8):
    for x in (test_u8, test_u8.numpy()):
        z = run.encode(x)
        assert z.shape == (N, run.latent_dim) and type(z) is type(x)
        images = run.decode(z)
        assert images.shape == (N, 28, 28) and type(images) is type(x)
        np.testing.assert_allclose(np.asarray(images), np.asarray(run.reconstruct(x)), atol=1e-5)
    one = run.decode(run.encode(test_u8.numpy())[0])  # one code (L,) -> one image
    assert one.shape == (28, 28) and isinstance(one, np.ndarray)


def test_batches_do_not_change_the_answer(seed_runs, test_u8, mnist_dir):
    whole = load_run(seed_runs["conv"]).reconstruct(test_u8)
    small = load_run(seed_runs["conv"])
    small.batch_size = 2  # N = 5 images: batches of 2, 2 and 1
    torch.testing.assert_close(small.reconstruct(test_u8), whole)
    torch.testing.assert_close(small.encode(test_u8), load_run(seed_runs["conv"]).encode(test_u8))


def test_torch_out_is_usable_outside_inference_mode(run, test_u8):
    out = run.reconstruct(test_u8)
    assert not out.is_inference()
    w = torch.ones((), requires_grad=True)
    (out * w).sum().backward()  # an inference tensor would refuse to be saved for backward
    assert w.grad is not None


def test_model_is_left_in_the_mode_it_was_in(seed_runs, test_u8):
    run = load_run(seed_runs["linear"])
    run.model.train()
    run.reconstruct(test_u8)
    assert run.model.training


def test_device_auto_and_device_objects(seed_runs, test_u8):
    auto = aelab.load(seed_runs["linear"], device="auto")
    assert auto.device.type == aelab.runtime.resolve_device("auto").type
    out = auto.reconstruct(test_u8)  # CPU images, model wherever auto put it
    assert out.device == test_u8.device
    cpu = aelab.load(seed_runs["linear"], device=torch.device("cpu"))
    torch.testing.assert_close(out, cpu.reconstruct(test_u8), atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_images_come_back_on_cuda(seed_runs, test_u8):
    run = aelab.load(seed_runs["conv"], device="cuda")
    out = run.reconstruct(test_u8.cuda())
    assert out.is_cuda
    cpu_model = aelab.load(seed_runs["conv"], device="cpu")
    torch.testing.assert_close(out.cpu(), cpu_model.reconstruct(test_u8), atol=1e-4, rtol=0)
    assert cpu_model.reconstruct(test_u8.cuda()).is_cuda  # images on the GPU, model on the CPU


# --- what is refused --------------------------------------------------------------------


@pytest.mark.parametrize("images, says", [
    (np.full((2, 28, 28), 255.0),
     "got float values up to 255; give uint8 images or floats in [0, 1] (divide by 255)"),
    (torch.full((2, 28, 28), 17.5), "up to 17.5"),
    (np.full((2, 28, 28), -0.5, np.float32), "down to -0.5"),
    (torch.full((2, 28, 28), float("nan")), "NaN"),
    (np.zeros((2, 27, 28), np.uint8), "shape (2, 27, 28); give (N, 28, 28), (N, 1, 28, 28), (N, 784)"),
    (torch.zeros(2, 3, 28, 28), "shape (2, 3, 28, 28)"),
    (np.zeros((2, 28, 28, 2)), "shape (2, 28, 28, 2)"),
    (np.zeros(783), "shape (783,)"),
    (np.zeros((0, 28, 28), np.uint8), "no images"),
    (np.full((2, 28, 28), "a"), "dtype <U1; give uint8 images (0..255) or floats in [0, 1]"),
    (np.zeros((2, 28, 28), np.complex64), "dtype complex64"),
    (torch.zeros(2, 28, 28, dtype=torch.complex64), "dtype complex64"),
    (torch.zeros(2, 28, 28, dtype=torch.int64), "dtype int64"),
    (np.zeros((2, 28, 28), bool), "dtype bool"),
    ([[0.0] * 28] * 28, "as list; give a numpy array or a torch tensor"),
])
def test_bad_images_are_refused_with_what_was_given(seed_runs, images, says):
    run = load_run(seed_runs["linear"])
    for method in (run.encode, run.reconstruct):
        with pytest.raises(AelabError) as e:
            method(images)
        assert says in str(e.value)


@pytest.mark.parametrize("codes, says", [
    (np.zeros((2, 4)), "shape (2, 4); this model's codes are (N, 5) or one code (5,)"),
    (torch.zeros(2, 5, 1), "shape (2, 5, 1)"),
    (np.zeros(0), "shape (0,)"),
    (np.zeros((0, 5)), "shape (0, 5)"),
    (np.full((2, 5), "x"), "dtype <U1"),
    (torch.zeros(2, 5, dtype=torch.complex64), "dtype complex64"),
    (torch.full((2, 5), float("inf")), "NaN or infinite"),
    ([0.0] * 5, "as list"),
])
def test_bad_codes_are_refused(seed_runs, codes, says):
    with pytest.raises(AelabError) as e:
        load_run(seed_runs["linear"]).decode(codes)
    assert says in str(e.value)


def test_bad_devices_and_sample_counts_are_refused(seed_runs):
    with pytest.raises(AelabError, match="device 'gpu' is not one aelab knows"):
        load_run(seed_runs["linear"], device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(AelabError, match="no CUDA GPU"):
            load_run(seed_runs["linear"], device="cuda")
    run = load_run(seed_runs["linear"])
    for n in (0, -1, 2.5, True):
        with pytest.raises(AelabError, match="sample"):
            run.sample(n)


# --- sampling ---------------------------------------------------------------------------


def test_autoencoder_samples_come_from_the_gaussian_of_its_training_codes(run, mnist_dir):
    assert run.samplers == ("gmm", "gaussian")  # the default, gmm: tests/test_samplers.py
    a = run.sample(7, sampler="gaussian", seed=3)
    assert isinstance(a, np.ndarray) and a.shape == (7, 28, 28) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, run.sample(7, sampler="gaussian", seed=3))  # same seed
    assert not np.array_equal(a, run.sample(7, sampler="gaussian", seed=4))
    # the same codes `aelab explore` draws for its samples figure, decoded
    train_x, _ = load_dataset("mnist", "train", mnist_dir, log=lambda *_: None)
    z = sample_codes(encode_all(run.model, train_x), 7, variational=False, seed=3)
    np.testing.assert_allclose(a, run.decode(z.numpy()), atol=1e-6)
    t = run.sample(7, sampler="gaussian", seed=3, as_numpy=False)
    assert torch.is_tensor(t) and t.device == run.device
    np.testing.assert_array_equal(t.cpu().numpy(), a)


def test_a_fresh_handle_samples_the_same(seed_runs, mnist_dir):
    a = load_run(seed_runs["linear"], data_dir=mnist_dir).sample(4, seed=1)  # gmm: fitted, saved
    b = load_run(seed_runs["linear"], data_dir=mnist_dir).sample(4, seed=1)  # ... and read
    np.testing.assert_array_equal(a, b)


def test_vae_samples_its_prior_without_the_data(vae_run, test_u8, tmp_path):
    run = load_run(vae_run, data_dir=tmp_path / "no-data-here")  # the prior needs no images
    assert run.variational and run.default_sampler == "prior"
    a = run.sample(6, seed=0)
    assert a.shape == (6, 28, 28) and a.min() >= 0 and a.max() <= 1
    z = torch.randn(6, run.latent_dim, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(a, run.decode(z).numpy(), atol=1e-6)  # N(0, I) codes, decoded
    np.testing.assert_array_equal(a, run.sample(6, seed=0))
    assert not np.array_equal(a, run.sample(6, seed=1))
    # its handle works on images as any other
    np.testing.assert_allclose(run.reconstruct(test_u8.numpy()),
                               run.decode(run.encode(test_u8.numpy())), atol=1e-5)
