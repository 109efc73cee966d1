"""`python -m seqjax.sample` and `python -m seqjax.viz` on tiny trained runs, and the plotting helpers."""
import importlib.util
import json
import pathlib
import shutil

import helpers_train  # noqa: F401  (repository root on sys.path, persistent compilation cache)
import matplotlib.image
import numpy as np
import pytest

from seqjax import checkpoint, sample, task, train, viz

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _smoke(name: str, workdir: pathlib.Path) -> str:
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    config.train.steps, config.train.eval_every, config.train.checkpoint_every = 2, 0, 0
    train.train_and_evaluate(config, str(workdir), experiment=name)
    return str(workdir)


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    return _smoke("char_gpt", tmp_path_factory.mktemp("char"))


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    return _smoke("vit", tmp_path_factory.mktemp("vit"))


def test_rollout_matches_loop_and_hand_case():
    rng = np.random.default_rng(0)
    w = rng.random((3, 2, 4, 5, 5))
    w /= w.sum(-1, keepdims=True)  # rows are distributions, like softmax weights
    got = viz.attention_rollout(w)
    for b in range(2):
        ref = np.eye(5)
        for layer in range(3):
            a = w[layer, b].mean(0) + np.eye(5)
            a = a / a.sum(-1, keepdims=True)
            ref = a @ ref
        np.testing.assert_allclose(got[b], ref, rtol=1e-12)
    np.testing.assert_allclose(got.sum(-1), 1.0)  # a product of row-stochastic matrices stays row-stochastic
    # One layer, one head that attends entirely to token 0: rollout = (A + I) / 2, by hand.
    one = np.zeros((1, 1, 1, 2, 2))
    one[..., 0] = 1.0
    np.testing.assert_allclose(viz.attention_rollout(one)[0], [[1.0, 0.0], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"weights: expected \[L, B, N, T, T\]"):
        viz.attention_rollout(np.zeros((2, 1, 1, 3, 4)))


def test_plots_write_pngs(tmp_path):
    w = np.array([[[[0.50, 0.20, 0.30], [0.12, 0.45, 0.43], [0.15, 0.42, 0.43]]]])  # [L=1, N=1, T=3, S=3]
    path = viz.plot_attention_grid(w, ["The", "big", "dog"], ["The", "big", "dog"], str(tmp_path / "a.png"))
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    with pytest.raises(ValueError, match="expected 3 row and 3 column labels"):
        viz.plot_attention_grid(w, ["The", "big"], ["The", "big", "dog"], str(tmp_path / "b.png"))
    path = viz.plot_rollout(np.zeros((28, 28)), np.ones((7, 7)), str(tmp_path / "r.png"))
    assert matplotlib.image.imread(path).ndim == 3
    with pytest.raises(ValueError, match="must tile the image"):
        viz.plot_rollout(np.zeros((28, 28)), np.ones((5, 5)), str(tmp_path / "r2.png"))


def test_sample_cli(char_run, capsys):
    rc = sample.main([f"--workdir={char_run}", "--prompt=ROMEO:", "--temperature=0.8", "--top_k=40",
                      "--top_p=0.95", "--length=40"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("ROMEO:") and len(out) == len("ROMEO:") + 40 + 1  # + print's newline
    # Greedy decoding is deterministic: two runs agree.
    assert sample.main([f"--workdir={char_run}", "--prompt=KING", "--temperature=0", "--length=10"]) == 0
    first = capsys.readouterr().out
    assert sample.main([f"--workdir={char_run}", "--prompt=KING", "--temperature=0", "--length=10"]) == 0
    assert capsys.readouterr().out == first
    assert sample.main([f"--workdir={char_run}", "--prompt=ROMEO@~", "--length=5"]) == 2
    assert "characters not in the vocabulary" in capsys.readouterr().err


def test_sample_cli_beam_search(char_run, capsys):
    assert sample.main([f"--workdir={char_run}", "--prompt=KING", "--beam_size=3", "--length=6"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("KING") and len(out) == 4 + 6 + 1  # + print's newline
    _, task_, model = task.load_run(char_run, ("char_lm",))
    assert sample.beam_text(task_, model, "KING", 6, 3) + "\n" == out  # the best beam, deterministic
    with pytest.raises(ValueError, match="exceeds the model's position table"):
        sample.beam_text(task_, model, "KING", model.max_len, 3)
    assert sample.main([f"--workdir={char_run}", "--prompt=KING", "--beam_size=3", "--top_k=5"]) == 2
    assert "--top_k apply to sampling only" in capsys.readouterr().err


def test_sample_rejects_other_models(char_run, vit_run, tmp_path, capsys):
    assert sample.main([f"--workdir={vit_run}", "--prompt=ROMEO:"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint from another model" in err and "image_classification" in err
    # Same task, different model width in config.json: the checkpoint's parameters do not fit.
    other = tmp_path / "other"
    other.mkdir()
    (other / "checkpoints").symlink_to(pathlib.Path(char_run) / "checkpoints")
    config = json.loads((pathlib.Path(char_run) / "config.json").read_text())
    config["model"]["d_model"] = 24
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="checkpoint from another model"):
        task.load_run(str(other), ("char_lm",))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        task.load_run(str(tmp_path / "nowhere"), ("char_lm",))


def test_viz_char_and_vit(char_run, vit_run, tmp_path):
    paths = viz.render(char_run, str(tmp_path / "c"), text="ROMEO:")
    assert matplotlib.image.imread(paths[0]).ndim == 3
    paths = viz.render(vit_run, str(tmp_path / "v"), index=2)
    assert pathlib.Path(paths[0]).name == "rollout.png" and matplotlib.image.imread(paths[0]).ndim == 3
    good = tmp_path / "img.npy"
    np.save(good, np.full((28, 28), 128, np.uint8))
    assert viz.main([f"--workdir={vit_run}", f"--image={good}", f"--out={tmp_path / 'v2'}"]) == 0
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"--image: expected a 28 x 28 grey-scale .* got shape \(32, 32\)"):
        viz.render(vit_run, str(tmp_path / "v3"), image=str(bad))
    with pytest.raises(ValueError, match="--input: required"):
        viz.render(char_run, str(tmp_path / "c2"))


@pytest.mark.parametrize("program, first, second, message", [
    (sample, ["--workdir={nowhere}"], [], "--workdir is required"),
    (viz, ["--workdir={nowhere}", "--out={nowhere}"], ["--workdir={nowhere}"], "--out is required"),
], ids=["sample", "viz"])
def test_main_depends_only_on_its_arguments(program, first, second, message, tmp_path, capsys):
    """main(argv) is a function of argv: a flag given to an earlier call does not carry over to the next."""
    nowhere = str(tmp_path / "nowhere")
    try:
        assert program.main([a.format(nowhere=nowhere) for a in first]) == 2
        capsys.readouterr()
        assert program.main([a.format(nowhere=nowhere) for a in second]) == 2
        assert message in capsys.readouterr().err
    finally:
        program.FLAGS.unparse_flags()  # leave the module's flags at their defaults for the other tests


def damage(step_dir: pathlib.Path, how: str) -> None:
    if how == "truncated":  # every data file of the state cut to 10 bytes, as by a full disk or a lost copy
        for f in (step_dir / "state").rglob("*"):
            if f.is_file() and f.parent.name == "d":
                with open(f, "r+b") as fh:
                    fh.truncate(10)
    else:  # the state's metadata lost
        (step_dir / "state" / "_METADATA").unlink()


@pytest.mark.parametrize("how", ["truncated", "no_metadata"])
def test_damaged_checkpoint_is_one_line_for_every_reader(char_run, tmp_path, capfd, how):
    run = tmp_path / "run"
    shutil.copytree(char_run, run)
    step_dir = max((d for d in (run / "checkpoints").iterdir() if d.name.isdigit()),
                   key=lambda d: int(d.name))
    damage(step_dir, how)
    capfd.readouterr()
    # python -m seqjax.sample (viz reads through the same load_run)
    assert sample.main([f"--workdir={run}", "--prompt=KING", "--length=5"]) == 2
    err = [line for line in capfd.readouterr().err.splitlines() if line.startswith("python -m seqjax.sample")]
    assert len(err) == 1 and f"damaged checkpoint {step_dir}" in err[0]
    # train.init_from reads it with checkpoint.load_params; launch.py reports CheckpointError in one line
    with pytest.raises(checkpoint.CheckpointError, match=f"damaged checkpoint {step_dir}") as e:
        checkpoint.load_params(str(run), {})
    assert "\n" not in str(e.value)


def test_reading_a_checkpoint_prints_no_orbax_metadata_warning(char_run, capfd):
    capfd.readouterr()
    assert sample.main([f"--workdir={char_run}", "--prompt=KING", "--temperature=0", "--length=3"]) == 0
    assert "Metadata file does not exist" not in capfd.readouterr().err


@pytest.mark.parametrize("module", [viz, sample])
def test_help_prints_the_whole_description_and_exits_0(module, capsys):
    assert module.main(["--help"]) == 0
    out = capsys.readouterr().out
    first_paragraph = module.__doc__.strip().split("\n\n")[0]
    assert out.startswith(f"usage: {module.PROG} [flags]\n\n{first_paragraph}\n")  # not cut at its first line
    assert module.__doc__.strip() in out and "--workdir" in out


def test_help_without_docstrings_still_exits_0(capsys):
    from seqjax import cli

    values = cli.new_flags()
    assert cli.parse(values, ["--help"], "prog", None) is False  # python -OO sets __doc__ to None
    assert "docstrings stripped" in capsys.readouterr().out
