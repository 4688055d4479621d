"""Datasets: the TFDS array_record writer (tfds_builder), the grain loader (loader), record encoding
(records), k-means anchors (anchors), ``irlvla generate / inspect / render`` (commands), and the NAVSIM
adapter (navsim/)."""
