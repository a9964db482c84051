"""`minibuild` command modules; importing one registers its commands on `minibuild.app.app`."""
