"""Launcher-parity harness: packages executed the way Kubeflow's driver and launcher execute them."""
