"""minibuild: fills the minicontainer store (pull, import, build, push) and manages its images."""
