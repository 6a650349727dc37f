"""MLService.ExportModel: a trained model as an ONNX file (mixed into ``services.ml_service.MLServicer``).

The graph comes from ``utils.engine.models.onnx_export`` (raw feature columns in, Predict's
predictions and probabilities out). A ``ppo_execution`` policy is not a predictor: its stored
``policy.onnx`` is returned as it is (``observation`` in; ``action`` index and ``logits`` out).
"""
from __future__ import annotations

from api_proto import ml_pb2
from services.errors import failed_precondition, invalid, not_found, resource_exhausted
from utils.engine.models import InvalidModelId, ModelNotFound, validate_model_id
from utils.engine.models.onnx_export import NotExportable, OnnxModel, export_onnx

FORMATS = ("onnx",)
POLICY_TYPE = "ppo_execution"


class ExportModelRPC:
    """Needs ``self.model_store`` and ``self.settings`` (MLServicer's)."""

    def ExportModel(self, request, context):
        try:
            model_id = validate_model_id(request.model_id)
        except InvalidModelId as exc:
            raise invalid("model_id", str(exc)) from None
        if request.format not in FORMATS:
            raise invalid("format", f"unknown format {request.format[:40]!r}; valid formats: {', '.join(FORMATS)}")
        try:
            metadata = self.model_store.read_metadata(model_id)
            exported = (_policy_graph(self.model_store, model_id, metadata)
                        if metadata.get("model_type") == POLICY_TYPE else export_onnx(self.model_store.load(model_id)))
        except ModelNotFound:
            raise not_found(f"no model with id {model_id!r}") from None
        except NotExportable as exc:
            raise failed_precondition(f"model {model_id!r}: {exc}") from None
        limit = getattr(self.settings, "grpc_max_message_bytes", 0)
        if limit and len(exported.content) > limit - 64 * 1024:
            raise resource_exhausted(f"the ONNX graph of model {model_id!r} is {len(exported.content):,} bytes, more "
                                     f"than one gRPC message carries here (GRPC_MAX_MESSAGE_BYTES={limit:,})")
        return ml_pb2.ExportModelResponse(model_id=model_id, format="onnx", content=exported.content,
                                          input_names=exported.input_names, output_names=exported.output_names,
                                          opset=exported.opset, feature_columns=exported.feature_columns)


def _policy_graph(model_store, model_id: str, metadata: dict) -> OnnxModel:
    """The execution policy's own ``policy.onnx`` (written at training, read back unchanged)."""
    from utils.engine.execution.policy.storage import ONNX_ACTION, ONNX_FILE, ONNX_INPUT, ONNX_LOGITS, ONNX_OPSET
    path = model_store.model_path(model_id) / ONNX_FILE
    if not path.is_file():
        raise NotExportable(f"model type {POLICY_TYPE!r} has no {ONNX_FILE} stored")
    return OnnxModel(path.read_bytes(), (ONNX_INPUT,), (ONNX_ACTION, ONNX_LOGITS), ONNX_OPSET,
                     tuple(metadata.get("feature_columns", ())))
