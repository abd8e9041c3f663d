"""The whole loop, run by `dvc repro` on a temp copy of the project with the bundled sample.

One module-scoped project is driven through the user's story in order, the operator's routine
each time (`prodcls land`, `dvc repro`, `git add` the `.dvc` files and `dvc.lock`, commit):
drop A (one class held back) makes version 1, the champion, through a `dvc repro` SIGKILLed in
four stages and run again each time; a no-op repro; a bad drop is stopped by the validate gate,
the report says why and the champion stays; drop B (new images, the held-back class among them)
makes version 2, the new champion, and `prodcls audit diff 1 2` names what came in; drop C
re-delivers images of drop A and trains nothing; a changed train param makes a worse version 3,
which stays the challenger; the notebooks run on the result; then, with drop A gone from the
working tree, `prodcls audit reproduce 1` re-makes version 1, uninterrupted, from its record alone
(the same metrics as the killed run's), and `dvc checkout` brings drop A back byte for byte.
"""

import csv
import hashlib
import importlib
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import psutil
import psycopg2
import pytest
import torch
import yaml
from helpers import (
    REPO,
    SAMPLE_DIR,
    command_env,
    copy_project,
    execute_notebook,
    run,
)
from mlflow import MlflowClient
from PIL import Image, ImageOps
from scipy.special import softmax
from servers import mlflow_server, postgres_server, s3_server, sqlalchemy_uri

from prodcls_pipeline.core.tracking import TRACKING_URI_ENV
from prodcls_pipeline.data.images import ImageStore
from prodcls_pipeline.evaluation.prediction import BATCH_SIZE
from prodcls_pipeline.models.classifier import checkpoint_preprocessing
from prodcls_pipeline.models.onnx_export import INPUT_NAME
from prodcls_pipeline.runtime.batching import image_batches
from prodcls_pipeline.runtime.sessions import create_session

pytestmark = pytest.mark.e2e

E2E_ROBUSTNESS_IMAGES = 16
E2E_MAX_EPOCHS = 3
E2E_FINE_TUNE_IMAGES = 64
# The loop makes only what can be deployed; pruned and distilled variants are opt-in.
VARIANTS = {"fp32", "int8"}
STAGES = ["ingest", "validate", "split", "augment", "train", "evaluate", "compress", "package"]
UINT8_LEVELS = 256
# Drop C sends again this many of drop A's images.
REDELIVERED_IMAGES = 40
# Drop A holds this class back, so drop B brings a class the first model never saw.
HELD_BACK_CLASS = "Kiwi"
DROPS = Path("data/01_raw/drops")
# A `dvc repro` is killed once in each of these stages, in this order, at a seeded random point.
KILLED_STAGES = ["ingest", "train", "compress", "package"]
KILL_SEED = 15
# The longest a killed run may take to reach its kill point.
KILL_WAIT_SECONDS = 900
# Rich wraps Kedro's log at the terminal width; wide lines keep each "Running node: …" whole.
WIDE_LOG = {"COLUMNS": "400", "PYTHONUNBUFFERED": "1"}


def reporting(project: Path, name: str) -> Path:
    return project / "data" / "08_reporting" / name


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e") / "prodcls"
    # Attacks on every test image would make each evaluate run minutes; the scores are
    # exercised, their precision is not. Likewise the training epochs (the sample's first epoch
    # already scores far above the promotion floor), the pruning recoveries, the distillation,
    # the cached augmented views and the timing repeats: real, but fewer.
    overrides = {
        "train": {"views_per_image": 1, "max_epochs": E2E_MAX_EPOCHS},
        "evaluate": {"robustness_images": E2E_ROBUSTNESS_IMAGES},
        "compress": {
            "fine_tune_images": E2E_FINE_TUNE_IMAGES,
            "distillation": {"epochs": 1},
            "pruning": {"recovery_epochs": 1},
            "benchmark_images": 16,
            "benchmark_repeats": 1,
        },
    }
    copy_project(root, overrides)
    staging = root.parent / "staging"
    run(root, "prodcls", "drops", str(SAMPLE_DIR), "--dest", str(staging), "--count", "2")
    hold_back(staging / "drop-001", HELD_BACK_CLASS)
    return root


def hold_back(drop: Path, label: str) -> None:
    """Remove one class from a staged labels.csv drop (a copy of the sample, not raw data)."""
    labels = drop / "labels.csv"
    with labels.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    kept = [row for row in rows if row["label"] != label]
    for row in rows:
        if row["label"] == label:
            (drop / row["path"]).unlink()
    with labels.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)


@pytest.fixture(scope="module")
def staging(project: Path) -> Path:
    return project.parent / "staging"


def land(project: Path, staging: Path, drop: str) -> None:
    """The operator's routine up to `dvc repro`: land the drop, which versions it with DVC."""
    output = run(project, "prodcls", "land", str(staging / drop)).stdout
    assert f"git add {DROPS / drop}.dvc dvc.lock" in output, output


def commit(project: Path, message: str) -> None:
    """The operator's routine after reading the reports: commit the .dvc files and dvc.lock."""
    run(project, "git", "add", str(DROPS), "dvc.lock", "data/08_reporting")
    run(
        project,
        "git",
        "-c",
        "user.name=test",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-qm",
        message,
    )
    assert run(project, "git", "status", "--porcelain").stdout.strip() == ""


def audit(project: Path, *args: str) -> tuple[str, dict]:
    """`prodcls audit ARGS`: its terminal output, and the same report as JSON."""
    report = project.parent / f"audit-{'-'.join(args)}.json"
    output = run(project, "prodcls", "audit", *args, "--output", str(report)).stdout
    return output, read_json(report)


def aliases(project: Path) -> dict[str, int]:
    script = (
        "import json, mlflow; from prodcls_pipeline.core.tracking import set_tracking;"
        "set_tracking();"
        "print(json.dumps(dict(mlflow.MlflowClient().get_registered_model('prodcls').aliases)))"
    )
    output = run(project, sys.executable, "-c", script).stdout.strip().splitlines()[-1]
    return {name: int(version) for name, version in json.loads(output).items()}


def predict(project: Path, image: Path, *model: str, env: dict[str, str] | None = None) -> dict:
    output = run(project, "prodcls", "predict", str(image), "--json", *model, env=env).stdout
    [prediction] = json.loads(output)
    return prediction


def registered_versions(project: Path) -> int:
    script = (
        "import mlflow,sys; from prodcls_pipeline.core.tracking import set_tracking;"
        "set_tracking();"
        "print(len(mlflow.MlflowClient().search_model_versions(\"name='prodcls'\")))"
    )
    return int(run(project, sys.executable, "-c", script).stdout.strip().splitlines()[-1])


def stage_nodes(stage: str) -> list[str]:
    module = importlib.import_module(f"prodcls_pipeline.pipelines.{stage}.pipeline")
    return [node.name for node in module.create_pipeline().nodes]


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL `process` and every process under it at once, as a machine that dies would."""
    victims = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for victim in victims:
        victim.kill()
    psutil.wait_procs(victims, timeout=60)


def repro_killed_in(project: Path, stage: str, choose: random.Random) -> str:
    """`dvc repro`, SIGKILLed while `stage` runs: once a seeded random node of it (not the last)
    has started, after a random fraction of a second; in train, after its first epoch
    checkpoint. Returns the run's output up to the kill."""
    node = "fit_classifier" if stage == "train" else choose.choice(stage_nodes(stage)[:-1])
    delay = choose.uniform(0.0, 0.5)
    checkpoint = project / "data/06_models/checkpoints/latest.pt"
    log = project.parent / f"killed-in-{stage}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            ["dvc", "repro"],
            cwd=project,
            env=command_env() | WIDE_LOG,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    started = time.monotonic()
    while not (
        f"Running node: {node}" in log.read_text()
        and (stage != "train" or (checkpoint.exists() and checkpoint.stat().st_mtime > started))
    ):
        assert process.poll() is None, f"ended before the kill point:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"never reached node {node} of {stage}"
        time.sleep(0.02)
    time.sleep(delay)
    kill_tree(process)
    text = log.read_text()
    during = text.rsplit(f"Running stage '{stage}'", 1)[-1]
    assert "Updating lock file" not in during, f"{stage} had ended before the kill:\n{during}"
    point = "its first epoch checkpoint" if stage == "train" else f"node {node} started"
    print(f"killed in {stage}: {delay:.2f} s after {point}")
    return text


def test_first_drop_runs_every_stage_through_a_kill_in_four_of_them(
    project: Path, staging: Path
) -> None:
    """Drop A's `dvc repro` is SIGKILLed in ingest, then in train, compress and package, and
    each time run again; the run that completes makes version 1. Training resumes from its
    checkpoint; `test_audit_reproduce_remakes_version_1_from_its_record` re-makes version 1
    uninterrupted in a clean worktree and gets every metric equal: what a kill left was never
    trusted, and two clean runs agree."""
    land(project, staging, "drop-001")
    choose = random.Random(KILL_SEED)

    killed = {stage: repro_killed_in(project, stage, choose) for stage in KILLED_STAGES}
    final = run(project, "dvc", "repro").stdout

    assert "Resuming training after epoch" in killed["compress"], killed["compress"][-4000:]
    assert "Running stage 'package'" in final and "Running stage 'train'" not in final

    metrics = read_json(reporting(project, "metrics.json"))
    assert metrics["test_images"] > 0 and 0.0 <= metrics["top1"] <= 1.0
    assert metrics["top1"] > 1.5 / metrics["classes"], (
        "no better than chance: training did not work"
    )
    assert metrics["robustness_images"] == E2E_ROBUSTNESS_IMAGES
    assert {"ece", "fgsm_top1", "pgd_top1", "corruption_top1_mean"} <= metrics.keys()
    for plot in [
        "confusion_matrix.png",
        "coarse_confusion_matrix.png",
        "reliability_diagram.png",
        "worst_mistakes.png",
    ]:
        assert reporting(project, plot).read_bytes().startswith(b"\x89PNG"), plot
    assert (project / "data" / "06_models" / "checkpoints" / "latest.pt").is_file()
    assert read_json(reporting(project, "validation_report.json"))["success"] is True
    assert reporting(project, "validation_report.md").is_file()
    registration = read_json(reporting(project, "registration.json"))
    assert registration["version"] in (1, "1")
    assert registered_versions(project) == 1

    compression = read_json(reporting(project, "compression_report.json"))
    assert set(compression["variants"]) == VARIANTS
    assert compression["deployable"] in VARIANTS
    assert (
        f"**{compression['deployable']}** (deployed)"
        in reporting(project, "compression_report.md").read_text()
    )
    assert {
        path.stem for path in (project / "data/07_model_output/onnx").glob("*.onnx")
    } == VARIANTS
    promotion = read_json(reporting(project, "promotion.json"))
    assert promotion["verdict"] == "promoted", promotion
    assert promotion["reason"].startswith("no champion yet: the floor alone decides")
    assert aliases(project) == {"champion": 1, "challenger": 1}
    card = (project / "data/07_model_output/package/MODEL_CARD.md").read_text()
    assert f"Model card: prodcls ({compression['deployable']})" in card

    record = read_json(reporting(project, "lineage_record.json"))
    [drop] = record["data"]["drops"]
    dvc_file = yaml.safe_load((project / DROPS / "drop-001.dvc").read_text())
    assert drop["tracked"] and drop["dvc_hash"] == dvc_file["outs"][0]["md5"]
    assert HELD_BACK_CLASS not in record["data"]["classes"]
    assert record["code"]["git_dirty"] is False and record["parent_champion"] is None
    commit(project, "version 1: drop A")


def top2_ties(logits: np.ndarray) -> np.ndarray:
    """Per image, whether its two most probable classes have the same softmax probability."""
    top2 = np.sort(softmax(logits.astype(np.float64), axis=1), axis=1)[:, -2:]
    return top2[:, 0] == top2[:, 1]


def test_int8_top2_probabilities_tie_only_where_fp32_ties(project: Path) -> None:
    checkpoint = torch.load(
        project / "data/06_models/classifier.pt", map_location="cpu", weights_only=True
    )
    splits = pd.read_parquet(project / "data/03_primary/splits.parquet")
    test = sorted(splits.loc[splits["split"] == "test", "sha256"])
    models = project / "data/07_model_output/onnx"
    sessions = {
        variant: create_session((models / f"{variant}.onnx").read_bytes())
        for variant in ("fp32", "int8")
    }
    logits: dict[str, list[np.ndarray]] = {variant: [] for variant in sessions}
    store = ImageStore(project / "data/02_intermediate/images")
    for batch in image_batches(store, test, checkpoint_preprocessing(checkpoint), BATCH_SIZE):
        for variant, session in sessions.items():
            logits[variant].append(session.run(None, {INPUT_NAME: batch})[0])
    fp32_ties, int8_ties = (top2_ties(np.concatenate(logits[variant])) for variant in sessions)

    assert len(int8_ties) == len(test) > 0
    int8_only = int(np.sum(int8_ties & ~fp32_ties))
    assert int8_only == 0, f"{int8_only} of {len(test)} test images tie in int8 only"
    # Logits quantised to 8 bits take at most 256 values whatever the images: that made the ties.
    int8_logits = np.concatenate(logits["int8"])
    assert int8_logits.size > 2 * UINT8_LEVELS
    assert np.unique(int8_logits).size > UINT8_LEVELS


def test_pipelines_and_dag_have_the_eight_stages(project: Path) -> None:
    registry = run(project, "kedro", "registry", "list").stdout
    assert all(f"- {stage}" in registry for stage in STAGES), registry
    dag = run(project, "dvc", "dag", "--md").stdout
    assert all(stage in dag for stage in STAGES), dag


def test_repro_after_a_full_run_runs_nothing(project: Path) -> None:
    output = run(project, "dvc", "repro").stdout
    assert "Running stage" not in output, output
    assert "up to date" in run(project, "dvc", "status").stdout


S3_BUCKET = "prodcls-dvc"
# moto accepts any credentials; DVC and boto3 need some in the environment.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def use_s3_remote(project: Path, endpoint: str) -> None:
    """The default DVC remote of this checkout (`--local`: the endpoint is the test's own)."""
    run(project, "dvc", "remote", "add", "--local", "-d", "storage", f"s3://{S3_BUCKET}/cache")
    run(project, "dvc", "remote", "modify", "--local", "storage", "endpointurl", endpoint)


def test_a_clone_pulled_from_an_s3_remote_runs_nothing(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    clone = tmp_path / "clone"
    with s3_server() as endpoint:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=S3_BUCKET)
        use_s3_remote(project, endpoint)
        try:
            pushed = run(project, "dvc", "push").stdout
        finally:
            run(project, "dvc", "remote", "remove", "--local", "storage")
        run(project, "git", "clone", "-q", str(project), str(clone))
        use_s3_remote(clone, endpoint)
        pulled = run(clone, "dvc", "pull").stdout
        repro = run(clone, "dvc", "repro").stdout

    assert "pushed" in pushed and "added" in pulled, (pushed, pulled)
    assert "Running stage" not in repro, repro[-3000:]
    assert "up to date" in run(clone, "dvc", "status").stdout
    for output in ("data/06_models/classifier.pt", "data/07_model_output/onnx/int8.onnx"):
        assert (clone / output).read_bytes() == (project / output).read_bytes(), output


def test_a_clone_trains_and_registers_on_an_mlflow_server_over_postgresql(
    project: Path, tmp_path: Path
) -> None:
    """A teammate's clone runs the train and package stages against a shared MLflow server
    whose backend store is PostgreSQL; the champion resolves from it. Training is reproducible,
    so the clone's classifier is the project's, byte for byte."""
    clone = tmp_path / "clone"
    run(project, "git", "clone", "-q", str(project), str(clone))
    run(clone, "dvc", "remote", "add", "--local", "-d", "project", str(project / ".dvc" / "cache"))
    run(clone, "dvc", "pull")
    image = next((clone / DROPS / "drop-001").rglob("*.jpg"))
    artifacts = tmp_path / "artifacts"
    with (
        postgres_server() as database,
        mlflow_server(sqlalchemy_uri(database), artifacts, tmp_path / "mlflow.log") as server,
    ):
        tracking = {TRACKING_URI_ENV: server}
        for stage in ("train", "package"):
            run(clone, "kedro", "run", "--pipelines", stage, env=tracking)
        champion = MlflowClient(server).get_model_version_by_alias("prodcls", "champion")
        answer = predict(clone, image, env=tracking)
        with psycopg2.connect(database) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT name, version FROM model_versions")
            stored_versions = cursor.fetchall()

    classifier = "data/06_models/classifier.pt"
    assert (clone / classifier).read_bytes() == (project / classifier).read_bytes()
    assert stored_versions == [("prodcls", 1)]
    assert champion.version == "1"
    assert champion.run_id == read_json(clone / "data/06_models/mlflow_run.json")["run_id"]
    assert read_json(reporting(clone, "promotion.json"))["verdict"] == "promoted"
    assert any(artifacts.rglob("MLmodel")), "the model went to the server's artifact store"
    assert not (clone / "mlruns").exists(), "nothing was written to a local store"
    assert answer == predict(project, image)


@pytest.mark.parametrize(
    ("module", "stages"),
    [
        # Validate embeds with the training area's frozen-backbone code: code deps are by area.
        ("src/prodcls_pipeline/training/losses.py", {"validate", "train", "compress"}),
        ("src/prodcls_serving/model.py", {"package"}),
    ],
)
def test_touching_a_module_outdates_exactly_the_stages_that_run_it(
    project: Path, module: str, stages: set[str]
) -> None:
    path = project / module
    original = path.read_bytes()
    path.write_bytes(original + b"\n# touched\n")
    try:
        outdated = json.loads(run(project, "dvc", "status", "--json").stdout)
    finally:
        path.write_bytes(original)
    assert set(outdated) == stages
    assert "up to date" in run(project, "dvc", "status").stdout


def test_bad_drop_stops_at_the_validate_gate(project: Path, staging: Path) -> None:
    drops = project / "data" / "01_raw" / "drops"
    bad = staging / "drop-bad"
    existing = sorted((drops / "drop-001").rglob("*.jpg"))
    (bad / "Banana").mkdir(parents=True)
    (bad / "Lime").mkdir(parents=True)
    bananas = [path for path in existing if "Banana" in path.parts][:5]
    for index, image in enumerate(bananas):
        ImageOps.mirror(Image.open(image)).save(bad / "Banana" / f"mirrored_{index}.jpg")
    conflict_source = next(p for p in existing if "Banana" not in str(p))
    shutil.copy2(conflict_source, bad / "Lime" / "relabelled.jpg")
    (bad / "Banana" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a complete jpeg")
    # A class spelt in another case, and under another coarse label than drop A gives it.
    (bad / "BANANA").mkdir()
    ImageOps.flip(Image.open(bananas[0])).save(bad / "BANANA" / "shouted.jpg")
    (bad / "Fruit" / "Banana").mkdir(parents=True)
    ImageOps.flip(Image.open(bananas[1])).save(bad / "Fruit" / "Banana" / "regrouped.jpg")
    # Ingest reads landed drops only: the bad drop arrives the way every drop does.
    land(project, staging, "drop-bad")
    raw_before = tree_digest(drops)
    model_before = tree_digest(project / "data" / "07_model_output" / "package")

    result = run(project, "dvc", "repro", check=False)

    assert result.returncode != 0
    combined = result.stdout + result.stderr
    assert "validate" in combined and "validation_report.md" in combined
    report = reporting(project, "validation_report.md").read_text()
    assert "drop-bad/Banana/corrupt.jpg" in report
    assert hashlib.sha256(conflict_source.read_bytes()).hexdigest() in report
    assert "'BANANA' vs 'Banana'" in report and "Banana in 'Banana' and 'Fruit'" in report
    checks = read_json(reporting(project, "validation_report.json"))["checks"]
    failed = {check["name"] for check in checks if not check["success"]}
    assert {"sha256 conflict", "label spellings", "coarse labels"} <= failed, failed
    assert tree_digest(drops) == raw_before
    assert tree_digest(project / "data" / "07_model_output" / "package") == model_before
    assert registered_versions(project) == 1
    assert aliases(project) == {"champion": 1, "challenger": 1}
    run(project, "dvc", "remove", str(DROPS / "drop-bad.dvc"))
    shutil.rmtree(drops / "drop-bad")


def test_second_drop_keeps_splits_and_decodes_only_new_images(project: Path, staging: Path) -> None:
    splits_before = pd.read_parquet(project / "data" / "03_primary" / "splits.parquet")
    store = project / "data" / "02_intermediate" / "images"
    stored_before = {p: p.stat().st_mtime_ns for p in store.rglob("*.jpg")}
    metrics_before = read_json(reporting(project, "metrics.json"))

    land(project, staging, "drop-002")
    output = run(project, "dvc", "repro").stdout

    manifest = pd.read_parquet(project / "data" / "02_intermediate" / "manifest.parquet")
    new_images = manifest.loc[manifest["drop"] == "drop-002", "sha256"].nunique()
    stored_after = {p: p.stat().st_mtime_ns for p in store.rglob("*.jpg")}
    assert all(stored_after[p] == mtime for p, mtime in stored_before.items())
    assert len(stored_after) - len(stored_before) == new_images
    assert f"decoded {new_images} new" in output, output[-3000:]

    splits_after = pd.read_parquet(project / "data" / "03_primary" / "splits.parquet")
    kept = splits_before.merge(splits_after, on="sha256", suffixes=("_before", "_after"))
    assert len(kept) == len(splits_before)
    assert (kept["split_before"] == kept["split_after"]).all()

    metrics_after = read_json(reporting(project, "metrics.json"))
    assert metrics_after["test_images"] > metrics_before["test_images"]
    assert metrics_after["classes"] == metrics_before["classes"] + 1
    assert registered_versions(project) == 2
    promotion = read_json(reporting(project, "promotion.json"))
    assert promotion["verdict"] == "promoted", promotion
    assert aliases(project) == {"champion": 2, "challenger": 2}
    commit(project, "version 2: drop B")


def test_audit_diff_names_the_new_class_and_every_added_image(project: Path) -> None:
    listing, versions = audit(project, "list")
    assert [row["version"] for row in versions] == [1, 2]
    assert all(row["lineage_record"] and not row["git_dirty"] for row in versions)
    assert versions[1]["drops"] == ["drop-001", "drop-002"]
    assert "v1" in listing and "v2" in listing and "drop-002" in listing

    output, diff = audit(project, "diff", "1", "2")

    manifest = pd.read_parquet(project / "data/03_primary/validated_manifest.parquet")
    usable = manifest.loc[manifest["status"] == "ok"]
    new_images = set(usable["sha256"]) - set(usable.loc[usable["drop"] == "drop-001", "sha256"])
    assert {image["sha256"] for image in diff["images_added"]} == new_images
    assert diff["images_removed"] == [] and diff["label_changes"] == []
    added_per_class = usable.loc[usable["sha256"].isin(new_images)].groupby("label")["sha256"]
    assert {row["label"]: row["added"] for row in diff["classes"]} == dict(
        added_per_class.nunique()
    )
    [new_class] = [row for row in diff["classes"] if row["status"] == "new class"]
    assert new_class["label"] == HELD_BACK_CLASS and new_class["before"] == 0
    assert diff["params"] == []
    assert [row["change"] for row in diff["drops"]] == ["", "added"]
    top1 = next(row for row in diff["metrics"] if row["metric"] == "top1")
    assert top1["delta"] == pytest.approx(top1["after"] - top1["before"], abs=1e-4)
    significance = diff["significance"]
    assert significance["images"] == diff["significance"]["test_images"][0]
    assert 0.0 <= significance["mcnemar_p"] <= 1.0
    assert (
        significance["interval_low"] <= significance["difference"] <= significance["interval_high"]
    )
    for text in ("New classes: Kiwi", "No params changed.", "McNemar exact p", "new class"):
        assert text in output, text
    markdown = run(project, "prodcls", "audit", "diff", "1", "2", "--format", "md").stdout
    assert all(image["source_path"] in markdown for image in diff["images_added"])


def redeliver(drop: Path, copy: Path, count: int) -> None:
    """Stage a drop that sends again, byte for byte, `count` images of a delivered labels.csv
    drop, under its own name."""
    with (drop / "labels.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))[:count]
    for row in rows:
        (copy / row["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(drop / row["path"], copy / row["path"])
    with (copy / "labels.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_a_redelivered_drop_trains_nothing_and_leaves_the_registry(
    project: Path, staging: Path
) -> None:
    redeliver(staging / "drop-001", staging / "drop-003", REDELIVERED_IMAGES)
    versions_before, aliases_before = registered_versions(project), aliases(project)
    land(project, staging, "drop-003")

    output = run(project, "dvc", "repro").stdout

    ran = {stage for stage in STAGES if f"Running stage '{stage}'" in output}
    assert {"ingest", "validate"} <= ran, output[-3000:]
    assert not ran & {"augment", "train", "evaluate", "compress"}, output[-3000:]
    assert "decoded 0 new" in output, output[-3000:]
    assert read_json(reporting(project, "validation_report.json"))["success"] is True
    assert registered_versions(project) == versions_before
    assert aliases(project) == aliases_before
    assert read_json(reporting(project, "registration.json"))["version"] == versions_before
    commit(project, "drop C: a re-delivery")


def test_a_worse_model_stays_challenger_and_predict_keeps_the_champion(project: Path) -> None:
    image = next((project / "data" / "01_raw" / "drops" / "drop-001").rglob("*.jpg"))
    champion_version = aliases(project)["champion"]
    champion_answer = predict(project, image)
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    # One epoch at a hundredth of the learning rates: a model far below the floor.
    for rate in ("learning_rate", "backbone_learning_rate"):
        params["train"][rate] = params["train"][rate] / 100
    params["train"]["max_epochs"] = 1
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))

    assert set(json.loads(run(project, "dvc", "status", "--json").stdout)) == {"train"}
    output = run(project, "dvc", "repro").stdout
    ran = {stage for stage in STAGES if f"Running stage '{stage}'" in output}
    assert ran == {"train", "evaluate", "compress", "package"}, output[-3000:]
    assert registered_versions(project) == 3

    promotion = read_json(reporting(project, "promotion.json"))
    assert promotion["verdict"] == "rejected", promotion
    assert (
        promotion["challenger"]["version"] == 3
        and promotion["champion"]["version"] == champion_version
    )
    challenger, champion = promotion["challenger"]["metrics"], promotion["champion"]["metrics"]
    assert challenger["test_images"] == champion["test_images"]
    assert challenger["top1"] < champion["top1"]
    assert "below the floor" in promotion["reason"]
    assert "**Verdict: rejected.**" in reporting(project, "promotion.md").read_text()
    assert aliases(project) == {"champion": champion_version, "challenger": 3}
    assert (
        predict(project, image)
        == champion_answer
        == predict(project, image, "--model", f"models:/prodcls/{champion_version}")
    )
    assert predict(project, image, "--model", "models:/prodcls/3") != champion_answer
    record = read_json(reporting(project, "lineage_record.json"))
    assert record["code"]["git_dirty"] is True and "params.yaml" in record["code"]["diff"]
    assert record["parent_champion"] == champion_version
    run(project, "git", "checkout", "params.yaml")


def test_every_notebook_runs_on_the_project(project: Path) -> None:
    shutil.copytree(REPO / "notebooks", project / "notebooks", dirs_exist_ok=True)
    for notebook in sorted((project / "notebooks").glob("*.ipynb")):
        execute_notebook(notebook, cwd=project / "notebooks")


def test_audit_reproduce_remakes_version_1_from_its_record(project: Path) -> None:
    """Version 1 came from a run killed in four stages (the first test); its re-make here is
    uninterrupted, in a clean worktree with an empty DVC cache, and must equal it exactly."""
    drop_a = project / DROPS / "drop-001"
    shutil.rmtree(drop_a)
    status_before = run(project, "git", "status", "--porcelain").stdout

    output, result = audit(project, "reproduce", "1")

    assert result["all_equal"] is True, [row for row in result["checks"] if not row["equal"]]
    assert [drop["drop"] for drop in result["drops"]] == ["drop-001"]
    assert result["drops"][0]["check"] == "restored byte for byte"
    recorded = {row["name"]: row for row in result["checks"]}
    for metric in (
        "top1",
        "macro_f1",
        "coarse_top1",
        "ece",
        "fgsm_top1",
        "validated manifest DVC hash",
    ):
        assert recorded[metric]["equal"], recorded[metric]
    assert "Every recorded metric was reproduced exactly." in output
    # Nothing in the working tree was touched: drop A is still gone, no worktree is left.
    assert not drop_a.exists()
    assert run(project, "git", "status", "--porcelain").stdout == status_before
    assert len(run(project, "git", "worktree", "list").stdout.strip().splitlines()) == 1
    print(f"audit reproduce 1: {result['wall_s']} s")


def test_dvc_checkout_restores_a_deleted_drop_byte_for_byte(project: Path, staging: Path) -> None:
    drop_a = project / DROPS / "drop-001"
    assert not drop_a.exists()

    run(project, "dvc", "checkout", str(DROPS / "drop-001.dvc"))

    assert tree_digest(drop_a) == tree_digest(staging / "drop-001")
    assert "deleted" not in run(project, "dvc", "status", str(DROPS / "drop-001.dvc")).stdout
