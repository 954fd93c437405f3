-- The consumer's batch apply (services/consumer/sink): locks, versioned
-- upserts, processed event ids, applied offsets and count deltas.

-- name: LikesForUpdate :many
-- Current state of a batch's (user, item) pairs, locked until commit.
SELECT like_key, liked, version FROM item_likes
WHERE like_key IN (sqlc.slice(like_keys)) FOR UPDATE;

-- name: UpsertLike :exec
-- Stores a newer state. The guard repeats the version rule in SQL, so a
-- stale write can never win even if the caller erred.
INSERT INTO item_likes (like_key, namespace, item_id, user_id, liked, version)
VALUES (?, ?, ?, ?, ?, ?)
ON DUPLICATE KEY UPDATE
    liked = IF(VALUES(version) > version, VALUES(liked), liked),
    version = GREATEST(version, VALUES(version));

-- name: FollowsForUpdate :many
SELECT follow_key, active, version FROM follows
WHERE follow_key IN (sqlc.slice(follow_keys)) FOR UPDATE;

-- name: UpsertFollow :exec
INSERT INTO follows (follow_key, follower, followee, active, version)
VALUES (?, ?, ?, ?, ?)
ON DUPLICATE KEY UPDATE
    active = IF(VALUES(version) > version, VALUES(active), active),
    version = GREATEST(version, VALUES(version));

-- name: ProcessedForUpdate :many
-- Which of a batch's event ids were applied before (locks the ids, present
-- or not, until commit).
SELECT event_id FROM processed_events
WHERE event_id IN (sqlc.slice(event_ids)) FOR UPDATE;

-- name: MarkProcessed :exec
-- Records an event id the batch found new (ProcessedForUpdate), with what
-- an increment changed (API calls leave namespace, item and metric empty).
INSERT INTO processed_events (event_id, namespace, item_id, metric, delta, version)
VALUES (?, ?, ?, ?, ?, ?);

-- name: AdvanceOffset :exec
-- Records that every message of a partition below next_offset is applied;
-- never moves back (a stale batch after a rebalance).
INSERT INTO pipeline_offsets (topic, partition_id, next_offset)
VALUES (?, ?, ?)
ON DUPLICATE KEY UPDATE next_offset = GREATEST(next_offset, VALUES(next_offset));

-- name: AddItemCount :exec
INSERT INTO item_counts (namespace, item_id, metric, value)
VALUES (?, ?, ?, ?)
ON DUPLICATE KEY UPDATE value = value + VALUES(value);

-- name: AddUserCounts :exec
INSERT INTO user_counts (user_id, followers, following)
VALUES (?, ?, ?)
ON DUPLICATE KEY UPDATE followers = followers + VALUES(followers), following = following + VALUES(following);

-- name: AddAPICalls :exec
INSERT INTO api_call_counts (procedure_name, code, calls)
VALUES (?, ?, ?)
ON DUPLICATE KEY UPDATE calls = calls + VALUES(calls);
