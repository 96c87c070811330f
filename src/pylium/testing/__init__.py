"""Fixtures on real parts for the tests (etcd server, netns, temporary stores). Never imported
by the package itself."""
