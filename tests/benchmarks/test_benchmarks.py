"""The benchmark helpers: params merge, configuration files, result rows. No pipeline runs here."""

import json
import sys
from pathlib import Path

import onnx
import pytest
from onnx import helper
from PIL import Image
from torch import nn

from benchmarks import (
    common,
    compression,
    drift,
    grocery_accuracy,
    inference,
    int8_speedup,
    pipeline,
    run_all,
)
from prodcls_pipeline.models.onnx_export import export_onnx

BASE = {
    "seed": 42,
    "train": {"mode": "head", "views_per_image": 2, "adversarial": {"enabled": False}},
}


def test_merge_overrides_nested_keys_and_leaves_the_inputs_alone() -> None:
    overrides = {"train": {"mode": "partial", "adversarial": {"enabled": True}}}
    merged = common.merge_params(BASE, overrides)
    assert merged == {
        "seed": 42,
        "train": {"mode": "partial", "views_per_image": 2, "adversarial": {"enabled": True}},
    }
    assert BASE["train"]["mode"] == "head" and BASE["train"]["adversarial"]["enabled"] is False


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"trian": {"mode": "full"}}, "Unknown param 'trian'"),
        (
            {"train": {"adversarial": {"enabeld": True}}},
            "Unknown param 'train.adversarial.enabeld'",
        ),
        ({"train": "full"}, "'train' is a section"),
        ({"seed": {"value": 1}}, "'seed' is a single value"),
    ],
)
def test_merge_rejects_what_params_yaml_does_not_have(overrides: dict, message: str) -> None:
    with pytest.raises(common.ConfigurationError, match=message):
        common.merge_params(BASE, overrides)


def write_config(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_configuration_file_gives_description_and_overrides(tmp_path: Path) -> None:
    write_config(tmp_path, "noaug", "description: no views\ntrain:\n  views_per_image: 0\n")
    [configuration] = common.load_configurations(["noaug"], BASE, tmp_path)
    assert configuration.name == "noaug" and configuration.description == "no views"
    assert configuration.params(BASE)["train"]["views_per_image"] == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("description: typo\ntrian:\n  mode: full\n", "Unknown param 'trian'"),
        ("train:\n  mode: full\n", "needs a non-empty `description`"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_invalid_configuration_files_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    path = write_config(tmp_path, "bad", text)
    with pytest.raises(common.ConfigurationError, match=message) as error:
        common.load_configuration(path, BASE)
    assert str(path) in str(error.value)


def test_unknown_configuration_name_lists_the_available_ones(tmp_path: Path) -> None:
    write_config(tmp_path, "head", "description: defaults\n")
    with pytest.raises(common.ConfigurationError, match="available: head"):
        common.load_configurations(["haed"], BASE, tmp_path)


def test_bundled_configurations_fit_params_yaml() -> None:
    names = sorted(path.stem for path in common.CONFIGS_DIR.glob("*.yaml"))
    assert set(grocery_accuracy.DEFAULT_CONFIGS) | {"full"} <= set(names)
    base = common.read_params()
    trains = {
        configuration.name: configuration.params(base)["train"]
        for configuration in common.load_configurations(names, base)
    }
    assert trains["default"] == base["train"], "`default` must be params.yaml as shipped"
    assert trains["default-adv"]["adversarial"]["enabled"] is True
    assert {**trains["default-adv"], "adversarial": base["train"]["adversarial"]} == base["train"]
    assert trains["head-noaug"]["mode"] == "head" and trains["partial-adv"]["mode"] == "partial"
    assert trains["full"]["mode"] == "full"


PARAMS = {"train": {"mode": "partial", "backbone": "efficientnet_lite0"}}
METRICS = {"top1": 0.81, "coarse_top1": 0.87, "macro_f1": 0.79, "top5": 0.97}


def test_a_cold_start_clears_the_embedding_caches_a_stage_fills(tmp_path: Path) -> None:
    project = common.BenchmarkProject(tmp_path)
    (tmp_path / "conf" / "base").mkdir(parents=True)
    (tmp_path / common.CATALOG_FILE).write_text((common.REPO / common.CATALOG_FILE).read_text())
    cache = tmp_path / "data" / "04_feature" / "embeddings"
    (cache / "lite0").mkdir(parents=True)
    (tmp_path / "dvc.yaml").write_text((common.REPO / "dvc.yaml").read_text())

    assert project.embedding_caches("split") == []
    assert project.embedding_caches("validate") == ["data/02_intermediate/validation_embeddings"]
    project.clear_persisted_outputs("train")

    assert not cache.exists()


def test_result_row_has_exactly_the_schema_fields() -> None:
    row = grocery_accuracy.result_row("partial", PARAMS, METRICS, 123.456, "cpu", "grocery-store")
    assert tuple(row) == grocery_accuracy.FIELDS
    assert row == {
        "config": "partial",
        "mode": "partial",
        "backbone": "efficientnet_lite0",
        "fine_top1": 0.81,
        "coarse_top1": 0.87,
        "macro_f1": 0.79,
        "fgsm_top1": None,  # metrics.json without an FGSM score
        "train_seconds": 123.5,
        "device": "cpu",
        "dataset": "grocery-store",
    }
    with_fgsm = grocery_accuracy.result_row("p", PARAMS, METRICS | {"fgsm_top1": 0.4}, 1, "cpu", "")
    assert with_fgsm["fgsm_top1"] == 0.4


def test_compression_rows_follow_the_schema_and_mark_the_deployed_variant() -> None:
    measured = {
        "size_mb": 13.4,
        "params": 4_000_000,
        "nonzero_params": 4_000_000,
        "ips_b1": 40.0,
        "ips_b32": 90.0,
        "p50_ms": 24.0,
        "p95_ms": 30.0,
        "top1": 0.8,
        "macro_f1": 0.78,
        "delta_top1": 0.0,
        "method": "as is",
    }
    report = {
        "deployable": "int8",
        "variants": {
            "fp32": {"variant": "fp32", **measured},
            "int8": {"variant": "int8", **measured, "ips_b32": 300.0},
        },
    }
    rows = compression.report_rows(report, "params.yaml", "grocery-store")
    assert [tuple(row) for row in rows] == [compression.FIELDS] * 2
    assert [(row["variant"], row["deployed"]) for row in rows] == [("fp32", False), ("int8", True)]
    assert rows[1]["ips_b32"] == 300.0 and rows[1]["config"] == "params.yaml"


def test_operator_kinds_are_told_apart_by_convolution_shape() -> None:
    def conv(name: str, kernel: list[int], group: int) -> onnx.NodeProto:
        return helper.make_node(
            "Conv", ["x", "w"], [name], name=name, kernel_shape=kernel, group=group
        )

    nodes = [
        conv("pointwise", [1, 1], 1),
        conv("depthwise", [3, 3], 32),
        conv("stem", [3, 3], 1),
        helper.make_node("QLinearConv", ["x"], ["q"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["x", "y"], ["z"]),
    ]
    assert [int8_speedup.node_part(node) for node in nodes] == [
        int8_speedup.POINTWISE,
        int8_speedup.DEPTHWISE,
        int8_speedup.FULL_CONV,
        int8_speedup.POINTWISE,
        int8_speedup.OTHER,
    ]
    assert [
        int8_speedup.openvino_part(node_type, exec_type)
        for node_type, exec_type in [
            ("GroupConvolution", "brgconv_avx512_dw_I8"),
            ("Convolution", "brgconv_avx512_1x1_I8"),
            ("Convolution", "brgconv_avx512_I8"),
            ("FakeQuantize", "jit_avx512_f32"),
        ]
    ] == [
        int8_speedup.DEPTHWISE,
        int8_speedup.POINTWISE,
        int8_speedup.FULL_CONV,
        int8_speedup.OTHER,
    ]


def test_speedup_rows_give_each_part_its_speedup_and_share_of_int8_time() -> None:
    parts = {
        "fp32": {int8_speedup.POINTWISE: 100.0, int8_speedup.DEPTHWISE: 40.0},
        "int8": {int8_speedup.POINTWISE: 25.0, int8_speedup.DEPTHWISE: 20.0, "other ops": 5.0},
    }
    rows = int8_speedup.part_rows("rt", {"fp32": 150.0, "int8": 60.0}, parts, "lite0", 2)
    assert [tuple(row) for row in rows] == [int8_speedup.FIELDS] * 5
    by_part = {row["part"]: row for row in rows}
    assert by_part["whole model"]["speedup"] == 2.5 and by_part["whole model"]["int8_share"] == 1
    assert by_part["pointwise conv"]["speedup"] == 4.0
    assert by_part["pointwise conv"]["int8_share"] == 0.5
    assert by_part["depthwise conv"]["speedup"] == 2.0
    assert by_part["full conv"]["speedup"] is None  # no such operator in either model


def test_onnxruntime_profiler_splits_a_model_by_operator_kind(tmp_path: Path) -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),
        nn.Conv2d(16, 32, 1),
    )
    path = tmp_path / "model.onnx"
    path.write_bytes(export_onnx(model, input_size=32))
    profiler = int8_speedup.OnnxRuntimeProfiler(path)
    batch = int8_speedup.input_batch(path, batch_size=4)
    assert batch.shape == (4, 3, 32, 32)
    for _ in range(3):
        profiler.run(batch)
    parts = profiler.part_times()
    kinds = {int8_speedup.POINTWISE, int8_speedup.DEPTHWISE, int8_speedup.FULL_CONV}
    assert kinds <= set(parts)
    assert all(parts[kind] > 0 for kind in kinds)


def test_missing_compress_outputs_name_the_stage_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dvc repro compress"):
        int8_speedup.model_paths(tmp_path)


def test_compact_webp_copy_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "grocery-store-gpu" / "train").mkdir(parents=True)
    (tmp_path / "grocery-store-gpu" / "train" / "a.webp").write_bytes(b"")
    assert "compact .webp copy" in common.dataset_label(tmp_path / "grocery-store-gpu")
    (tmp_path / "jpegs").mkdir()
    assert common.dataset_label(tmp_path / "jpegs") == "jpegs"


def row(config: str, dataset: str, top1: float) -> dict:
    return grocery_accuracy.result_row(config, PARAMS, METRICS | {"top1": top1}, 1, "cpu", dataset)


def test_results_replace_rows_of_the_same_configuration_and_dataset(tmp_path: Path) -> None:
    fields, key = grocery_accuracy.FIELDS, grocery_accuracy.RESULT_KEY
    common.write_results(
        "bench", [row("head", "a", 0.5), row("full", "a", 0.6)], fields, key, tmp_path
    )
    path = common.write_results(
        "bench", [row("head", "a", 0.7), row("head", "b", 0.8)], fields, key, tmp_path
    )
    written = json.loads(path.read_text())
    assert [(r["config"], r["dataset"], r["fine_top1"]) for r in written] == [
        ("full", "a", 0.6),
        ("head", "a", 0.7),
        ("head", "b", 0.8),
    ]


def test_rows_with_other_fields_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differ"):
        common.write_results(
            "bench", [{"config": "head"}], ("config", "mode"), ("config",), tmp_path
        )


def test_table_shows_every_field_and_missing_values_as_dashes() -> None:
    table = common.format_table([row("head", "grocery-store", 0.81234)], grocery_accuracy.FIELDS)
    header, _, line = table.splitlines()
    assert header.split() == list(grocery_accuracy.FIELDS)
    assert "0.8123" in line and " - " in line and " 1.0 " in line


def test_table_without_rows_is_just_the_header() -> None:
    assert common.format_table([], ("config", "fine_top1")).splitlines()[0].split() == [
        "config",
        "fine_top1",
    ]


def test_drift_reads_grocery_split_files_with_fine_class_names(tmp_path: Path) -> None:
    (tmp_path / "classes.csv").write_text(
        "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int)\n"
        "Golden-Delicious,0,Apple,0\nOat-Milk,1,Milk,1\n"
    )
    (tmp_path / "train.txt").write_text("train/a.jpg, 0, 0\n\ntrain/b.jpg, 1, 1\n")
    (tmp_path / "val.txt").write_text("val/c.jpg, 1, 1\n")
    assert drift.read_split_lines(tmp_path, ("train", "val")) == [
        (tmp_path / "train/a.jpg", "Golden-Delicious"),
        (tmp_path / "train/b.jpg", "Oat-Milk"),
        (tmp_path / "val/c.jpg", "Oat-Milk"),
    ]


def test_drift_drops_are_disjoint_seeded_and_refused_when_too_few_images() -> None:
    drops = drift.disjoint_drops(50, drops=4, size=10, seed=3)
    assert [len(drop) for drop in drops] == [10] * 4
    assert len(set().union(*map(set, drops))) == 40
    again = drift.disjoint_drops(50, drops=4, size=10, seed=3)
    assert all((a == b).all() for a, b in zip(drops, again, strict=True))
    with pytest.raises(ValueError, match="need 60 images; 50 given"):
        drift.disjoint_drops(50, drops=6, size=10, seed=3)


def test_drift_rows_give_the_flagged_share_and_are_judged_against_their_target() -> None:
    flags = {
        ("none", "image_mmd"): [False] * 19 + [True],
        ("none", "class_chi2"): [False] * 9 + [True],
        ("blur", "image_mmd"): [True] * 18 + [False] * 2,
        ("blur", "class_chi2"): [False] * 20,
    }
    rows = drift.flagged_rows(flags)
    assert [list(row) for row in rows] == [list(drift.FIELDS)] * 4
    assert [row["flagged_rate"] for row in rows] == [0.05, 0.1, 0.9, 0.0]
    verdicts = [line.split()[0] for line in drift.target_lines(rows)]
    assert verdicts == ["met", "MISSED", "MISSED", "info"]


def test_drift_shifts_darken_and_cast_each_pixel_and_blur_keeps_the_size() -> None:
    grey = Image.new("RGB", (40, 30), (200, 200, 200))
    assert drift.darken(grey).getpixel((0, 0)) == (70, 70, 70)
    assert drift.colour_cast(grey).getpixel((0, 0)) == (200, 160, 110)
    blurred = drift.gaussian_blur(grey)
    assert blurred.size == grey.size and blurred.getpixel((20, 15)) == (200, 200, 200)
    views = [shift.view for shift in drift.SHIFTS]
    assert len(set(views)) == len(views) and all(view.startswith("shift-") for view in views)


def test_drift_settings_come_from_the_params_section() -> None:
    params = common.read_params()
    settings = drift.drift_settings(params)
    assert settings.seed == params["seed"]
    assert settings.min_effect == params["validate"]["drift"]["min_effect"]


def test_drift_sweep_flags_a_drop_only_when_significant_and_above_the_effect_floor() -> None:
    settings = drift.drift_settings(common.read_params())
    significant = drift.ImageTest(statistic=0.0035, null_quantile=0.001, p_value=0.001)
    chance = drift.ImageTest(statistic=0.0035, null_quantile=0.001, p_value=0.5)
    rows = drift.sweep_rows({"none": [chance], "cast": [significant]}, settings)
    rates = {(row["min_effect"], row["shift"]): row["flagged_rate"] for row in rows}
    assert [list(row) for row in rows] == [list(drift.SWEEP_FIELDS)] * len(rows)
    assert rates[0.0, "none"] == 0.0 and rates[0.0, "cast"] == 1.0
    assert rates[0.002, "cast"] == 1.0 and rates[0.003, "cast"] == 0.0


def test_a_measured_run_gives_the_peak_memory_of_the_largest_process_of_its_tree(
    tmp_path: Path,
) -> None:
    project = common.BenchmarkProject(tmp_path / "project")
    project.root.mkdir()
    project.logs.mkdir()
    # A child of the command allocates 200 MiB: the command itself stays small.
    grandchild = "bytearray(200 * 2**20)"
    command = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}])"

    seconds, peak_mb = project.measured_run("probe", sys.executable, "-c", command)

    assert seconds > 0 and 200 <= peak_mb < 400


def test_a_failed_measured_run_raises_with_its_log(tmp_path: Path) -> None:
    project = common.BenchmarkProject(tmp_path / "project")
    project.root.mkdir()
    project.logs.mkdir()
    with pytest.raises(common.StageFailed, match="exited with 3"):
        project.measured_run("fails", sys.executable, "-c", "print('why'); raise SystemExit(3)")


def test_pipeline_verdicts_set_totals_and_noop_against_their_targets() -> None:
    rows = [
        {"profile": "default", "stage": "total", "seconds": 1500.0, "peak_rss_mb": 1.0},
        {"profile": "default", "stage": "noop", "seconds": 2.5, "peak_rss_mb": 1.0},
        {"profile": "head", "stage": "total", "seconds": 400.0, "peak_rss_mb": 1.0},
        {"profile": "head", "stage": "noop", "seconds": 3.5, "peak_rss_mb": 1.0},
    ]
    default, head = pipeline.verdicts(rows, {"default": 0.86, "head": 0.80})
    assert "25.0 min (misses 20 min)" in default and "(meets < 3 s)" in default
    assert "(meets 85%)" in default
    assert "6.7 min (misses 5 min)" in head and "3.5 s (misses < 3 s)" in head


def test_inference_requests_cycle_through_the_files_and_rows_follow_the_schema() -> None:
    files = [Path(f"{name}.jpg") for name in "abc"]
    assert inference.batches_of(files, 2, 2) == [files[:2], [files[2], files[0]]]
    row = inference.row("pyfunc", "int8", 32, 100.0, [0.1, 0.2, 0.3, 0.4], 200.0)
    assert list(row) == list(inference.FIELDS)
    assert row["p50_ms"] == pytest.approx(250.0) and row["p95_ms"] == pytest.approx(385.0)


def test_run_all_runs_every_benchmark_in_the_folder() -> None:
    folder = Path(run_all.__file__).parent
    with_main = {
        path.stem
        for path in folder.glob("*.py")
        if path.stem != "run_all" and "\ndef main(" in path.read_text()
    }
    assert set(run_all.BENCHMARKS) == with_main
