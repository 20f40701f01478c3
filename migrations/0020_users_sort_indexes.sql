-- The admin list on a large realm (100,000 users in docs/benchmarks.md):
-- every order it offers reads an index over the list's default filter
-- (pending and active users) holding the order and the id, so a page deep
-- into the list skips index entries without visiting the table, and the
-- total is counted from an index too. Other statuses (failed, deleted) are
-- found through their own index rather than a scan of every user.
CREATE INDEX users_live_created_idx ON users (created_at, id)
    WHERE status IN ('pending', 'active');
CREATE INDEX users_live_username_idx ON users (username, id)
    WHERE status IN ('pending', 'active');
CREATE INDEX users_last_login_asc_idx ON users (last_login_at ASC NULLS LAST, id)
    WHERE status IN ('pending', 'active');
CREATE INDEX users_last_login_desc_idx ON users (last_login_at DESC NULLS LAST, id DESC)
    WHERE status IN ('pending', 'active');
CREATE INDEX users_status_created_idx ON users (status, created_at, id);
