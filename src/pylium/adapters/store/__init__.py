"""L3: the key-value store behind one interface, with SQLite (``local``) and etcd backends."""
