"""Plain-Python machine learning for segmentation: MONAI networks, inference pipelines, training loops
and the classical CT lung method. Imports no Django and reads no settings.

Modules (imported explicitly, so that importing this package does not load torch):

- ``device``: :func:`select_device`, :func:`configure_threads`;
- ``networks``: :func:`build_network`, :func:`default_network_config`;
- ``inference``: :class:`Preprocessing`, :class:`NetworkSegmenter`, :class:`LungSegmenter`,
  :func:`load_segmenter`, :class:`InferenceCancelled`;
- ``lung``: :func:`segment_lungs`, ``LUNG_LABEL_TABLE``;
- ``training``: :func:`read_msd_dataset`, :func:`train_segmentation`, :func:`save_checkpoint`.

Axis order follows ``annotation.imaging``: arrays are (k, j, i), geometry in LPS millimetres.
"""
