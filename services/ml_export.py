"""MLService.ExportModel: a trained model as an ONNX file (mixed into ``services.ml_service.MLServicer``)."""
from __future__ import annotations

import grpc

from services.errors import ServiceError


class ExportModelRPC:
    """Needs ``self.model_store`` and ``self.settings`` (MLServicer's)."""

    def ExportModel(self, request, context):
        raise ServiceError(grpc.StatusCode.UNIMPLEMENTED, "ExportModel is not available yet")
