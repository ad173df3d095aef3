"""rsis: Recurrent Semantic Instance Segmentation as a DVC pipeline over one package (README.md)."""
