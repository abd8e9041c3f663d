"""The Kedro pipelines exported to an Airflow DAG with kedro-airflow: one task per stage, run as
its Kedro namespace, ordered as `dvc.yaml` orders the stages."""

import ast
import re
from itertools import product
from pathlib import Path

from helpers import REPO, run

from prodcls_pipeline.pipeline_registry import STAGES

DAG_FILE = "prodcls_pipeline_dag.py"
_EDGE = re.compile(r'tasks\["([\w-]+)"\] >> tasks\["([\w-]+)"\]')
_TASK = re.compile(r'@task\(task_id="([\w-]+)"\)\n\s+def \w+\(\):\n\s+_run_kedro_node\((.*)\)')
_DOT_EDGE = re.compile(r'^"([^"]+)" -> "([^"]+)";$', re.MULTILINE)

Edges = set[tuple[str, str]]


def closure(edges: Edges) -> Edges:
    """Every (before, after) pair the edges order, directly or through other stages."""
    reached = set(edges)
    for middle, before, after in product(STAGES, STAGES, STAGES):
        if (before, middle) in reached and (middle, after) in reached:
            reached.add((before, after))
    return reached


def dvc_edges() -> Edges:
    dot = run(REPO, "dvc", "dag", "--dot").stdout
    return {edge for edge in _DOT_EDGE.findall(dot) if set(edge) <= set(STAGES)}


def test_the_airflow_dag_runs_each_stage_as_one_task_in_dvc_yaml_order(tmp_path: Path) -> None:
    run(
        REPO,
        "kedro",
        "airflow",
        "create",
        "--pipelines",
        "__default__",
        "--group-by",
        "namespace",
        "--target-dir",
        str(tmp_path),
    )
    source = (tmp_path / DAG_FILE).read_text()
    ast.parse(source)

    tasks = dict(_TASK.findall(source))
    airflow_edges = set(_EDGE.findall(source))
    dvc = dvc_edges()

    assert tasks == {stage: f'namespaces=["{stage}"]' for stage in STAGES}
    # Every Airflow dependency is one DVC draws; DVC draws more direct edges (ingest -> train:
    # the image store, which Kedro nodes fill through a handle, is an output of ingest for DVC).
    assert airflow_edges <= dvc, airflow_edges - dvc
    assert closure(airflow_edges) == closure(dvc)
    assert ("ingest", "package") in closure(airflow_edges)
