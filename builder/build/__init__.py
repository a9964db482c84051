"""`minibuild build`: Containerfiles into images, step by step, with a step cache."""
