-- Images attached to messages. The bytes live in the content-addressed file
-- store; these tables hold what the MediaAttached events say about them.

-- One row per distinct image, however many messages it is attached to. The
-- attach command writes it in the same transaction as the event (so the
-- image's URL answers as soon as the 201 is sent); the media projector folds
-- the same rows from the log, which is how a replay rebuilds the table.
CREATE TABLE media_blobs (
    sha256       text    PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content_type text    NOT NULL,
    size         integer NOT NULL CHECK (size > 0),
    width        integer NOT NULL CHECK (width > 0),
    height       integer NOT NULL CHECK (height > 0)
);

-- Which images each message has, in attach order: the version of the
-- MediaAttached event in the message's stream.
CREATE TABLE message_media (
    message_id     uuid        NOT NULL,
    stream_version integer     NOT NULL,
    sha256         text        NOT NULL,
    attached_at    timestamptz NOT NULL,
    PRIMARY KEY (message_id, stream_version)
);
