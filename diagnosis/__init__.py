"""Diagnosis (辅助诊断): measurements from voxel spacing, longitudinal tracking, structured reports."""
