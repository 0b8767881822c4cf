"""Federated training (联邦训练): hospitals train segmentation models together without moving images."""
