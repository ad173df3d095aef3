"""Dataset sources, conversion into the common COCO-style format, and the dataset class every stage reads."""
