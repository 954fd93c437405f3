-- Reads of the durable record: the state an item or a user is rebuilt
-- from when it is missing from Redis (the counter's durable package), the
-- rows that settle a rebuild, and whole-table reads (reconciliation, tests).

-- Snapshots of many items or users at once: rebuilds of one moment (a read
-- of 500 items never seen before) share one transaction. Rows of other
-- (namespace, id) combinations of the two lists are dropped by the caller.

-- name: LikersOfItems :many
SELECT namespace, item_id, user_id FROM item_likes
WHERE namespace IN (sqlc.slice('namespaces')) AND item_id IN (sqlc.slice('ids')) AND liked
ORDER BY namespace, item_id, user_id;

-- name: MetricsOfItems :many
SELECT namespace, item_id, metric, value FROM item_counts
WHERE namespace IN (sqlc.slice('namespaces')) AND item_id IN (sqlc.slice('ids'))
ORDER BY namespace, item_id, metric;

-- name: FollowingOfUsers :many
SELECT follower, followee FROM follows WHERE follower IN (sqlc.slice('users')) AND active
ORDER BY follower, followee;

-- name: FollowersOfUsers :many
SELECT followee, follower FROM follows WHERE followee IN (sqlc.slice('users')) AND active
ORDER BY followee, follower;

-- The queries below settle a rebuild (docs/pipeline.md): every stored pair
-- with its version, the increments newer than a boundary, and how far the
-- consumer got.

-- name: ItemLikeRows :many
SELECT user_id, liked, version FROM item_likes WHERE namespace = ? AND item_id = ? ORDER BY user_id;

-- name: ItemIncrementsSince :many
SELECT metric, CAST(SUM(delta) AS SIGNED) AS total FROM processed_events
WHERE namespace = ? AND item_id = ? AND version >= ?
GROUP BY metric ORDER BY metric;

-- name: FollowingRows :many
SELECT followee, active, version FROM follows WHERE follower = ? ORDER BY followee;

-- name: FollowerRows :many
SELECT follower, active, version FROM follows WHERE followee = ? ORDER BY follower;

-- name: PipelineOffsets :many
SELECT partition_id, next_offset FROM pipeline_offsets WHERE topic = ? ORDER BY partition_id;

-- Single items and users, and whole tables.

-- name: ListItemCounts :many
SELECT metric, value FROM item_counts WHERE namespace = ? AND item_id = ? ORDER BY metric;

-- name: GetUserCounts :one
SELECT followers, following FROM user_counts WHERE user_id = ?;

-- name: GetLike :one
SELECT liked, version FROM item_likes WHERE namespace = ? AND item_id = ? AND user_id = ?;

-- name: ListLikers :many
SELECT user_id FROM item_likes WHERE namespace = ? AND item_id = ? AND liked ORDER BY user_id;

-- name: ListFollowing :many
SELECT followee FROM follows WHERE follower = ? AND active ORDER BY followee;

-- name: ListFollowers :many
SELECT follower FROM follows WHERE followee = ? AND active ORDER BY follower;

-- name: ListAllItemCounts :many
SELECT namespace, item_id, metric, value FROM item_counts ORDER BY namespace, item_id, metric;

-- name: ListAllUserCounts :many
SELECT user_id, followers, following FROM user_counts ORDER BY user_id;

-- name: ListAllLikes :many
SELECT namespace, item_id, user_id FROM item_likes WHERE liked ORDER BY namespace, item_id, user_id;

-- name: ListAllFollows :many
SELECT follower, followee FROM follows WHERE active ORDER BY follower, followee;
