-- MediaAttached version 2 carries the image's format as Pillow names it.
-- Version 1 recorded only the content type, which names one format each; a
-- version 1 event reads with the format derived from it, as in
-- domain/upcasting.py (media_attached_format).
-- Built of immutable parts only (jsonb_build_object is not one), so that it is
-- inlined into the statements that read the view like upcast_event itself.
CREATE FUNCTION upcast_media_attached_1(data jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN data || CASE data->>'content_type'
    WHEN 'image/jpeg' THEN '{"format": "JPEG"}'::jsonb
    WHEN 'image/png' THEN '{"format": "PNG"}'::jsonb
    WHEN 'image/gif' THEN '{"format": "GIF"}'::jsonb
    WHEN 'image/webp' THEN '{"format": "WEBP"}'::jsonb
    -- The reason names the content type: with only constant arguments, the call
    -- would be evaluated while the statement is planned, and fail every one.
    ELSE unreadable_event('MediaAttached', 1::smallint,
                          'no format for content type ' || coalesce(data->>'content_type', 'null'))
END;

CREATE OR REPLACE FUNCTION upcast_event(event_type text, version smallint, data jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN (event_type, version) IN (('SmsReceived', 1), ('SmsProcessed', 1), ('MediaAttached', 2))
        THEN data
    WHEN (event_type, version) = ('MediaAttached', 1) THEN upcast_media_attached_1(data)
    ELSE unreadable_event(event_type, version, 'no upcasting step for it in this database')
END;

-- The read model keeps the format beside the content type. Rows written so
-- far came from version 1 events: their format is derived the same way.
ALTER TABLE media_blobs ADD COLUMN format text;
UPDATE media_blobs
SET format = upcast_media_attached_1(jsonb_build_object('content_type', content_type))->>'format';
ALTER TABLE media_blobs ALTER COLUMN format SET NOT NULL;
