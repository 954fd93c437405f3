-- Read-only queries of the counter service against the consumer's schema
-- (services/consumer/migrations/sql): the durable state an item or a user
-- is rebuilt from when it is missing from Redis.

-- name: ItemLikers :many
SELECT user_id FROM item_likes WHERE namespace = ? AND item_id = ? AND liked ORDER BY user_id;

-- name: ItemMetrics :many
SELECT metric, value FROM item_counts WHERE namespace = ? AND item_id = ? ORDER BY metric;

-- name: UserFollowing :many
SELECT followee FROM follows WHERE follower = ? AND active ORDER BY followee;

-- name: UserFollowers :many
SELECT follower FROM follows WHERE followee = ? AND active ORDER BY follower;
