"""The model card (``README.md``) of a saved model, filled with its evaluation numbers.

One renderer for every saved model: :meth:`EmotionNet.save_pretrained
<emotionnet.models.EmotionNet.save_pretrained>` (through
:class:`~huggingface_hub.PyTorchModelHubMixin`, which
:meth:`EmotionRecognizer.save_pretrained <emotionnet.EmotionRecognizer.save_pretrained>`
calls) writes :func:`model_card`: huggingface_hub's card template (:data:`CARD_TEMPLATE`) with
the Hub metadata (:func:`card_data`) and a body with the model, its training and its
evaluation.

Example:
    >>> print(model_card(ModelConfig(), name="demo").splitlines()[1])
    library_name: emotionnet
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, Final

from huggingface_hub import ModelCard, ModelCardData

from ..errors import InvalidArgumentError
from .config import ModelConfig

__all__ = [
    "CARD_TEMPLATE",
    "LIBRARY_NAME",
    "PIPELINE_TAG",
    "card_data",
    "model_card",
    "normalize_evaluation",
]

LIBRARY_NAME: Final[str] = "emotionnet"
"""The ``library_name`` of emotionnet models on the Hugging Face Hub."""

PIPELINE_TAG: Final[str] = "image-classification"
"""The Hub task of emotionnet models."""

LICENSE: Final[str] = "mit"
TAGS: Final[tuple[str, ...]] = (
    "facial-expression-recognition",
    "emotion-recognition",
    "fer2013",
)

CARD_TEMPLATE: Final[str] = "---\n{{ card_data }}\n---\n\n{{ body }}\n"
"""The model-card template (Jinja, as huggingface_hub's): the YAML metadata, then the body."""

_SUMMARY_KEYS: Final[tuple[str, ...]] = (
    "num_samples",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "weighted_f1",
    "ece",
    "nll",
    "tta",
    "temperature",
    "uncalibrated_ece",
    "uncalibrated_nll",
)


def card_data(config: ModelConfig) -> ModelCardData:
    """The Hub metadata of a model: library, license, task and tags.

    Example:
        >>> card_data(ModelConfig()).tags[-2:]
        ['resnet18', 'pytorch']
    """
    return ModelCardData(
        library_name=LIBRARY_NAME,
        license=LICENSE,
        pipeline_tag=PIPELINE_TAG,
        tags=[*TAGS, config.architecture, "pytorch"],
    )


def _summary(report: Any) -> dict[str, Any]:
    if hasattr(report, "to_dict") and hasattr(report, "accuracy"):
        data = report.to_dict()
    elif isinstance(report, Mapping):
        data = dict(report)
    else:
        raise InvalidArgumentError(
            f"Cannot use {type(report).__name__} as evaluation results; pass an "
            "EvaluationReport, a dict of metric names to numbers, or a dict of names to those."
        )
    return {
        key: data[key]
        for key in _SUMMARY_KEYS
        if key in data and (isinstance(data[key], (numbers.Real, str)) or data[key] is None)
    }


def _is_metrics(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(v, (numbers.Real, str)) or v is None for v in value.values()
    )


def normalize_evaluation(evaluation: Any) -> dict[str, Any]:
    """Turn the accepted ``evaluation`` forms into ``{name: report or metrics dict}``.

    Args:
        evaluation: ``None``; an :class:`~emotionnet.metrics.EvaluationReport`; a dict of
            metric names to numbers; or a dict of names (``"public_test"``,
            ``"public_test, TTA flip"``) to either.

    Returns:
        Names to reports or metric dicts (``{}`` for ``None``).

    Raises:
        InvalidArgumentError: If the value has none of these forms.

    Example:
        >>> normalize_evaluation({"accuracy": 0.7})
        {'evaluation': {'accuracy': 0.7}}
    """
    if evaluation is None:
        return {}
    if _is_metrics(evaluation) or (
        hasattr(evaluation, "accuracy") and hasattr(evaluation, "to_dict")
    ):
        return {"evaluation": evaluation}
    if isinstance(evaluation, Mapping):
        for value in evaluation.values():
            _summary(value)  # validates
        return {str(name): value for name, value in evaluation.items()}
    raise InvalidArgumentError(
        f"Cannot use {type(evaluation).__name__} as evaluation results; pass an "
        "EvaluationReport, a dict of metric names to numbers, or a dict of names to those."
    )


def _save_arguments(
    config: ModelConfig, *, evaluation: Any, metadata: Mapping[str, Any], name: str | None
) -> dict[str, Any]:
    """The ``config`` and ``model_card_kwargs`` of ``EmotionNet.save_pretrained``.

    ``config.json`` gets the config's fields and a ``"metadata"`` entry: ``metadata``, the
    summaries of ``evaluation`` (see :func:`normalize_evaluation`; ``None`` keeps those in
    ``metadata``) and the emotionnet version. The card shows reports given now in full,
    older summaries briefly.

    Example:
        >>> kwargs = _save_arguments(ModelConfig(), evaluation={"accuracy": 0.5}, metadata={},
        ...                          name=None)
        >>> kwargs["config"]["metadata"]["evaluation"]
        {'evaluation': {'accuracy': 0.5}}
    """
    from .._version import __version__

    named = normalize_evaluation(evaluation)
    meta = {key: value for key, value in metadata.items() if key != "emotionnet_version"}
    if named:
        meta["evaluation"] = {key: _summary(value) for key, value in named.items()}
    meta["emotionnet_version"] = __version__
    card = {"evaluation": named or dict(meta.get("evaluation") or {}), "metadata": meta}
    return {
        "config": {**config.to_dict(), "metadata": meta},
        "model_card_kwargs": {**card, "name": name},
    }


def _format_metric(value: Any, percent: bool) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{float(value):.2%}" if percent else f"{float(value):.4f}"


def _table_cell(value: Any) -> str:
    # A Markdown table cell is one line, and a bare | would end it.
    return " ".join(str(value).split()).replace("|", "\\|")


def _calibration_table(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    calibrated = {key: s for key, s in summaries.items() if s.get("temperature") is not None}
    if not calibrated:
        return []
    lines = [
        "### Calibration",
        "",
        "The probabilities of each view set are divided by a temperature fitted on the data "
        "named (`temperatures` in `config.json`); it changes no prediction, only the "
        "confidence. Expected calibration error (ECE, 15 bins) and log-loss (NLL, nats), "
        "before and after:",
        "",
        "| data | temperature | ECE before | ECE after | NLL before | NLL after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, s in calibrated.items():
        lines.append(
            f"| {key} | {float(s['temperature']):.4f} | "
            f"{_format_metric(s.get('uncalibrated_ece'), False)} | "
            f"{_format_metric(s.get('ece'), False)} | "
            f"{_format_metric(s.get('uncalibrated_nll'), False)} | "
            f"{_format_metric(s.get('nll'), False)} |"
        )
    lines.append("")
    return lines


def model_card(
    config: ModelConfig,
    *,
    evaluation: Mapping[str, Any] | None = None,
    name: str = "emotionnet model",
    metadata: Mapping[str, Any] | None = None,
) -> str:
    """Write the model card (``README.md``) of a saved model.

    Args:
        config: The model config.
        evaluation: Names to :class:`~emotionnet.metrics.EvaluationReport` objects or metric
            dicts, as :func:`normalize_evaluation` returns.
        name: Title of the card.
        metadata: Extra facts; ``"description"`` is printed under the title, and a
            ``"training"`` table of facts about how the weights were made (recipe, epochs,
            hardware, time, command, ...: names to text or numbers) becomes the card's
            *Training* section.

    Returns:
        Markdown with a Hugging Face YAML header (:func:`card_data`), rendered from
        :data:`CARD_TEMPLATE` with huggingface_hub's :class:`~huggingface_hub.ModelCard`.

    Example:
        >>> card = model_card(ModelConfig(), evaluation={"public_test": {"accuracy": 0.7}},
        ...                   metadata={"training": {"epochs": 40}})
        >>> "| public_test | - | 70.00% |" in card, "| epochs | 40 |" in card
        (True, True)
        >>> card = model_card(ModelConfig(temperatures={"flip": 0.9}), evaluation={
        ...     "public_test": {"ece": 0.02, "nll": 0.85, "temperature": 0.9,
        ...                     "uncalibrated_ece": 0.04, "uncalibrated_nll": 0.89}})
        >>> "| public_test | 0.9000 | 0.0400 | 0.0200 | 0.8900 | 0.8500 |" in card
        True
    """
    evaluation = evaluation or {}
    metadata = metadata or {}
    summaries = {key: _summary(value) for key, value in evaluation.items()}
    lines = [f"# {name}", ""]
    if metadata.get("description"):
        lines += [str(metadata["description"]), ""]
    lines += [
        f"A {config.architecture} facial emotion classifier ({config.stem!r} stem) for "
        f"{config.input_size}x{config.input_size} grayscale faces, made with "
        "[emotionnet](https://emotionnet.readthedocs.io).",
        "",
        "## Usage",
        "",
        "```python",
        "from emotionnet import EmotionRecognizer",
        "",
        'recognizer = EmotionRecognizer.from_pretrained("path/or/org-name")',
        'print(recognizer.predict("face.jpg")[0])',
        'print(recognizer.predict_faces("photo.jpg")[0])  # needs emotionnet[face]',
        "```",
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | {config.architecture}, {config.stem!r} stem |",
        f"| input | {config.in_chans} x {config.input_size} x {config.input_size}, "
        f"normalised with mean {list(config.mean)} and std {list(config.std)} (0..1 scale) |",
        f"| classes | {', '.join(config.labels)} |",
    ]
    if config.temperatures:
        temperatures = ", ".join(f"{mode} {t:.4g}" for mode, t in config.temperatures.items())
        lines.append(f"| calibration temperatures | {temperatures} |")
    lines.append("")
    training = metadata.get("training")
    if isinstance(training, Mapping) and training:
        lines += ["## Training", "", "| | |", "|---|---|"]
        lines += [f"| {key} | {_table_cell(value)} |" for key, value in training.items()]
        lines.append("")
    if summaries:
        lines += [
            "## Evaluation",
            "",
            "| data | samples | accuracy | balanced accuracy | macro F1 | weighted F1 | ECE |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for key, s in summaries.items():
            samples = str(s["num_samples"]) if s.get("num_samples") is not None else "-"
            lines.append(
                f"| {key} | {samples} | {_format_metric(s.get('accuracy'), True)} | "
                f"{_format_metric(s.get('balanced_accuracy'), True)} | "
                f"{_format_metric(s.get('macro_f1'), False)} | "
                f"{_format_metric(s.get('weighted_f1'), False)} | "
                f"{_format_metric(s.get('ece'), False)} |"
            )
        lines.append("")
        lines += _calibration_table(summaries)
        for key, value in evaluation.items():
            if hasattr(value, "to_markdown"):
                lines += [f"### {key}", "", value.to_markdown().rstrip(), ""]
    body = "\n".join(lines).rstrip()
    card = ModelCard.from_template(card_data(config), template_str=CARD_TEMPLATE, body=body)
    return str(card).rstrip() + "\n"
