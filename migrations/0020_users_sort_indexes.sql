-- The admin list sorts by last sign-in either way (users who never signed
-- in last) and by username; over the list's default filter (pending and
-- active users) these indexes give the order without sorting every row, so
-- a page deep into 100,000 users reads the index rather than the table.
-- (Creation order has users_created_at_idx; usernames users_username_key.)
CREATE INDEX users_last_login_asc_idx ON users (last_login_at ASC NULLS LAST, id)
    WHERE status IN ('pending', 'active');
CREATE INDEX users_last_login_desc_idx ON users (last_login_at DESC NULLS LAST, id DESC)
    WHERE status IN ('pending', 'active');
