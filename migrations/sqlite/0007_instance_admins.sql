-- Instance admins: the people who may open the ops dashboard and end any call. Not a
-- team role; granted with `floo admin grant` or by `--admin-email` at sign-in.
-- Kept in step with ../postgres/0007_instance_admins.sql.

CREATE TABLE instance_admins (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    granted_at INTEGER NOT NULL
);
