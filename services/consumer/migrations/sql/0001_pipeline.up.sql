-- Durable record of the counting service, written by the consumer.
-- Identifiers compare byte-wise (utf8mb4_bin), as Redis keys do.
-- like_key and follow_key are SHA-256 digests of the length-prefixed pair
-- (computed by the consumer, package sink) so a batch can look up all its
-- pairs with one IN list; the primary key makes each pair unique (the
-- secondary indexes serve listings).

CREATE TABLE item_likes (
    like_key BINARY(32) NOT NULL,
    namespace VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    item_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    user_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    liked BOOLEAN NOT NULL,
    version BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (like_key),
    KEY item_likes_item (namespace, item_id, user_id)
);

CREATE TABLE item_counts (
    namespace VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    item_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    metric VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (namespace, item_id, metric)
);

CREATE TABLE follows (
    follow_key BINARY(32) NOT NULL,
    follower VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    followee VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    active BOOLEAN NOT NULL,
    version BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (follow_key),
    KEY follows_follower (follower, followee),
    KEY follows_followee (followee)
);

CREATE TABLE user_counts (
    user_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    followers BIGINT NOT NULL,
    following BIGINT NOT NULL,
    PRIMARY KEY (user_id)
);

CREATE TABLE processed_events (
    event_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    PRIMARY KEY (event_id)
);

CREATE TABLE api_call_counts (
    procedure_name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    code VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    calls BIGINT NOT NULL,
    PRIMARY KEY (procedure_name, code)
);
