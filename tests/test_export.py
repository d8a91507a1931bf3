"""`aelab export --format onnx`: files that onnxruntime runs to PyTorch's numbers."""

import numpy as np
import pytest
import torch

from aelab.runs import load_run
from aelab.cli import main
from aelab.data import load_dataset

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("model", ["linear", "conv"])
def test_onnx_encoder_and_decoder_agree_with_pytorch(seed_runs, mnist_dir, tmp_path, model):
    assert main(["export", str(seed_runs[model]), "--format", "onnx", "--out", str(tmp_path)]) == 0
    net = load_run(seed_runs[model]).model
    x_u8, _ = load_dataset("mnist", "test", data_dir=mnist_dir)
    x = (x_u8[:7].float() / 255).unsqueeze(1).numpy()  # (7, 1, 28, 28) real digits
    encoder, decoder = session(tmp_path / "encoder.onnx"), session(tmp_path / "decoder.onnx")
    with torch.inference_mode():
        for batch in (1, 7):  # the batch axis is dynamic: not fixed to the export's example
            codes = encoder.run(["code"], {"image": x[:batch]})[0]
            want = net.encode(torch.from_numpy(x[:batch])).numpy()
            np.testing.assert_allclose(codes, want, rtol=1e-5, atol=1e-5)
            images = decoder.run(["image"], {"code": codes})[0]
            np.testing.assert_allclose(images, net.decode(torch.from_numpy(codes)).numpy(), atol=1e-5)
            assert images.shape == (batch, 1, 28, 28)


def test_onnx_files_describe_themselves(seed_runs, tmp_path):
    main(["export", str(seed_runs["conv"]), "--format", "onnx", "--out", str(tmp_path)])
    for part in ("encoder", "decoder"):
        proto = onnx.load(str(tmp_path / f"{part}.onnx"))
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["aelab_model"] == "conv" and meta["latent_dim"] == "64" and meta["part"] == part
        batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch.dim_param == "batch"


def test_export_writes_beside_the_run_by_default(seed_runs, capsys):
    assert main(["export", str(seed_runs["linear"]), "--format", "onnx"]) == 0
    out = seed_runs["linear"] / "onnx"
    assert (out / "encoder.onnx").stat().st_size > 1000 and (out / "decoder.onnx").is_file()
    assert f"wrote {out / 'decoder.onnx'}" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:Exporting to ONNX opset")  # torch's, before our error
def test_export_errors_are_readable(seed_runs, tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--format", "onnx"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", str(seed_runs["linear"]), "--format", "onnx", "--out", str(tmp_path),
                 "--opset", "99"]) == 2
    assert "opset 99" in capsys.readouterr().err and not (tmp_path / "encoder.onnx").exists()
    with pytest.raises(SystemExit):
        main(["export", str(seed_runs["linear"])])  # --format is required
    assert "--format" in capsys.readouterr().err
