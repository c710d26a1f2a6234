"""HugeCTR v3.0 compatibility package: existing ``import hugectr`` scripts run on hugectr-lab."""
