DROP TABLE api_call_counts;
DROP TABLE processed_events;
DROP TABLE user_counts;
DROP TABLE follows;
DROP TABLE item_counts;
DROP TABLE item_likes;
