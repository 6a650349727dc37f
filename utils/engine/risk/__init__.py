"""Portfolio risk measures (VaR, CVaR/ES, Cornish-Fisher, Monte-Carlo, drawdown, beta, component VaR).

Pure array code on the array module ``xp`` handed in (``Backend.xp``); no gRPC or Redis here.
"""
from utils.engine.risk.historical import WorstWindow
from utils.engine.risk.report import RiskLevel, RiskReport, risk_report

__all__ = ["RiskLevel", "RiskReport", "WorstWindow", "risk_report"]
