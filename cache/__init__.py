"""minicache: the content-addressed store shared by minibuild and minirun."""
