"""The evaluate stage: predict the test split (run, inference) and score it: COCO AP and recall
(coco), the official Cityscapes evaluation (cityscapes), CVPPP's SBD and |DiC| (leaf_metrics), and
the comparison with the paper's tables (report)."""
