"""Text sentiment in -1 (negative) .. 1 (positive): lexicon models that ship inside their packages
(VADER for English, SnowNLP for Chinese) and, when configured, an LLM behind an OpenAI-compatible
chat-completions API, with the lexicon score as the fallback. No gRPC, no Redis here."""
from utils.sentiment.analyzer import LANGUAGES, SentimentResult, analyze
from utils.sentiment.lexicon import detect_language, lexicon_score
from utils.sentiment.llm import LLMConfig, LLMError

__all__ = ["LANGUAGES", "LLMConfig", "LLMError", "SentimentResult", "analyze", "detect_language", "lexicon_score"]
