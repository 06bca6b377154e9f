"""Catalogs: which deployment versions a runtime serves (folder.py: one folder, the pod;
repository.py: every deployment of git branches, `modelrepo serve`)."""
