"""Annotation (智能标注): studies, series, volumes, one-click segmentation and the viewer."""
