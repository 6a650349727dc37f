"""MLService.AnalyzeSentiment (mixed into ``services.ml_service.MLServicer``)."""
from __future__ import annotations

import grpc

from services.errors import ServiceError


class SentimentRPC:
    """Needs ``self.settings`` and ``self.metrics`` (MLServicer's)."""

    def AnalyzeSentiment(self, request, context):
        raise ServiceError(grpc.StatusCode.UNIMPLEMENTED, "AnalyzeSentiment is not available yet")
