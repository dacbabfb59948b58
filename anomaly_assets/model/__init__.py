"""The threat forests: training, the quality gate and the anomaly_model asset."""
