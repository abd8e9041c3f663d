"""Validate: the reviewer's decisions applied, the data contract and the data-quality checks
(report and review page, always written), then the retraining gate."""

from dataclasses import fields
from typing import Any

import pandas as pd

from prodcls_pipeline.data.images import ImageStore
from prodcls_pipeline.data.splitting import assign_splits
from prodcls_pipeline.framework.params import SplitParams, TrainParams, ValidateParams
from prodcls_pipeline.training.embedding_cache import EmbeddingStore
from prodcls_pipeline.training.frozen_embeddings import embed_frozen
from prodcls_pipeline.validation.checks import (
    ValidationRules,
    raise_if_failed,
    select_validated,
    validate_manifest,
)
from prodcls_pipeline.validation.quality import (
    QualityFindings,
    QualitySettings,
    quality_checks,
    review_tables,
    with_findings,
)
from prodcls_pipeline.validation.report import render_markdown
from prodcls_pipeline.validation.review import (
    REVIEW_FILE,
    ReviewOutcome,
    apply_review,
    parse_review_decisions,
    review_section,
)
from prodcls_pipeline.validation.review_page import render_review_page, thumbnail_jpeg

REVIEW_PAGE_TITLE = "Label review"


def review_manifest(
    manifest: pd.DataFrame, review_decisions: str
) -> tuple[pd.DataFrame, ReviewOutcome]:
    outcome = apply_review(manifest, parse_review_decisions(review_decisions, REVIEW_FILE))
    return outcome.manifest, outcome


def check_manifest(
    reviewed_manifest: pd.DataFrame,
    previous_validated_manifest: pd.DataFrame,
    params: ValidateParams,
) -> dict[str, Any]:
    contract = params.model_dump(include={field.name for field in fields(ValidationRules)})
    return validate_manifest(
        reviewed_manifest, previous_validated_manifest, ValidationRules.from_params(contract)
    )


def check_quality(
    contract_report: dict[str, Any],
    reviewed_manifest: pd.DataFrame,
    previous_validated_manifest: pd.DataFrame,
    review_outcome: ReviewOutcome,
    image_store: ImageStore,
    validation_embeddings: EmbeddingStore,
    params: ValidateParams,
    split_params: SplitParams,
    train_params: TrainParams,
    seed: int,
) -> QualityFindings | None:
    if contract_report["skipped"]:
        return None
    current = select_validated(reviewed_manifest)
    splits = assign_splits(current, seed, split_params.val_fraction, split_params.test_fraction)
    return quality_checks(
        reviewed_manifest,
        previous_validated_manifest,
        lambda sha256s: embed_frozen(
            sha256s,
            image_store.open,
            validation_embeddings,
            train_params.backbone,
            train_params.weights_file,
            train_params.embed_batch_size,
        ),
        dict(zip(splits["sha256"], splits["split"], strict=True)),
        review_outcome.reviewed,
        QualitySettings.from_params(params.model_dump(), seed),
    )


def report_validation(
    contract_report: dict[str, Any],
    quality_findings: QualityFindings | None,
    review_outcome: ReviewOutcome,
    image_store: ImageStore,
    params: ValidateParams,
) -> tuple[dict[str, Any], str, str]:
    report = with_findings(contract_report, quality_findings, review_section(review_outcome))
    suspects, pairs = review_tables(quality_findings)
    page = render_review_page(
        suspects,
        pairs,
        lambda sha256: thumbnail_jpeg(image_store.open(sha256), params.review_thumbnail_size),
        REVIEW_PAGE_TITLE,
        REVIEW_FILE,
    )
    return report, render_markdown(report), page


def gate_manifest(
    validation_report: dict[str, Any], reviewed_manifest: pd.DataFrame
) -> pd.DataFrame:
    raise_if_failed(validation_report)
    return select_validated(reviewed_manifest)
