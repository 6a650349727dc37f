"""The usage guide's Python client examples (seed 003, "API使用示例"), verbatim.

Run against a server on localhost:50051 (`make run`):  .venv/bin/python examples/guide_client.py
tests/integration/test_guide_client.py runs this file unchanged (only the address is pointed at
the test server) and checks that its blocks still match the seed document.
"""
# ---- guide block ----
import grpc
from api_proto import backtest_pb2, backtest_pb2_grpc
import json

# 连接到服务器
channel = grpc.insecure_channel('localhost:50051')
stub = backtest_pb2_grpc.BacktestServiceStub(channel)

# 准备回测请求
strategy_config = {
    'strategy_type': 'trend_following',
    'lookback_period': 20,
    'moving_average_window': 50
}

request = backtest_pb2.BacktestRequest(
    stock_codes=['000001.SZ', '600000.SH'],
    start_time='2024-01-01',
    end_time='2024-12-31',
    strategy_config=json.dumps(strategy_config),
    initial_capital=1000000,
    commission_rate=0.0003
)

# 执行回测
response = stub.IntegratedBacktest(request)
print(f"回测ID: {response.backtest_id}")
print(f"状态: {response.status}")

# 查询回测状态
status_request = backtest_pb2.BacktestStatusRequest(
    backtest_id=response.backtest_id
)
status = stub.GetBacktestStatus(status_request)
print(f"回测状态: {status}")

# 获取回测结果
if status.status == backtest_pb2.BacktestStatus.COMPLETED:
    result_request = backtest_pb2.BacktestResultRequest(
        backtest_id=response.backtest_id
    )
    result = stub.GetBacktestResult(result_request)
    print(f"总收益率: {result.performance_metrics.total_return}")
    print(f"夏普比率: {result.performance_metrics.sharpe_ratio}")
    print(f"最大回撤: {result.performance_metrics.max_drawdown}")

# ---- guide block ----
import grpc
from api_proto import realtime_pb2, realtime_pb2_grpc
from datetime import datetime

# 连接到服务器
channel = grpc.insecure_channel('localhost:50051')
stub = realtime_pb2_grpc.RealTimeServiceStub(channel)

# 创建数据流生成器
def generate_market_data():
    stock_codes = ['000001.SZ', '600000.SH', '000002.SZ']

    for i in range(100):
        for stock_code in stock_codes:
            yield realtime_pb2.StreamDataRequest(
                stock_code=stock_code,
                price=10.0 + i * 0.1,
                volume=1000000 + i * 1000,
                timestamp=datetime.now().isoformat()
            )

# 发送流式数据并接收处理结果
responses = stub.StreamMarketData(generate_market_data())

for response in responses:
    print(f"股票: {response.stock_code}")
    print(f"处理结果: {response.processed_data}")
    print(f"流ID: {response.stream_id}")

# ---- guide block ----
# 计算技术指标
feature_request = realtime_pb2.FeatureRequest(
    stock_code='000001.SZ',
    feature_types=['sma_20', 'sma_50', 'rsi', 'macd', 'bollinger']
)

feature_response = stub.ComputeFeatures(feature_request)

print(f"股票代码: {feature_response.stock_code}")
print(f"特征值: {feature_response.features}")
print(f"计算时间: {feature_response.timestamp}")

# ---- guide block ----
import grpc
from api_proto import ml_pb2, ml_pb2_grpc
import json
import pandas as pd

# 连接到服务器
channel = grpc.insecure_channel('localhost:50051')
stub = ml_pb2_grpc.MLServiceStub(channel)

# 准备训练数据
training_data = {
    'price': [10.0, 10.5, 11.0, 10.8, 11.2],
    'volume': [1000000, 1100000, 1200000, 1150000, 1300000],
    'sma_20': [10.2, 10.3, 10.4, 10.5, 10.6],
    'rsi': [50, 55, 60, 58, 62],
    'target': [1, 1, 0, 1, 1]  # 1=上涨, 0=下跌
}

# 创建训练请求
train_request = ml_pb2.TrainModelRequest(
    model_type='random_forest',
    training_data=json.dumps(training_data),
    feature_columns=['price', 'volume', 'sma_20', 'rsi'],
    target_column='target',
    model_params=json.dumps({'n_estimators': 100, 'max_depth': 5})
)

# 提交训练任务
train_response = stub.TrainModel(train_request)
print(f"训练任务ID: {train_response.task_id}")

# 查询训练状态
status_request = ml_pb2.TrainingStatusRequest(
    task_id=train_response.task_id
)
status = stub.GetTrainingStatus(status_request)
print(f"训练状态: {status.status}")

# 训练完成后获取模型ID
if status.status == 'completed':
    model_id = status.model_id

    # 使用模型进行预测
    predict_data = {
        'price': [11.5],
        'volume': [1400000],
        'sma_20': [10.7],
        'rsi': [65]
    }

    predict_request = ml_pb2.PredictRequest(
        model_id=model_id,
        input_data=json.dumps(predict_data)
    )

    predict_response = stub.Predict(predict_request)
    print(f"预测结果: {predict_response.predictions}")
    print(f"预测时间: {predict_response.prediction_time}秒")
