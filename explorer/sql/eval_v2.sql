-- Evaluation store, schema v2: each evaluation records its generation settings, sweep and judges, so
-- readers (dashboard, report) take them from the store instead of a recipe file on disk.
create table if not exists evaluations (
    gen_key        varchar primary key,   -- hash of the settings below (evaluate.gen_key)
    settings       json,                  -- generation settings: greedy, max_new_tokens, system prompt
    sweep          varchar,               -- sweep.name of the recipe that evaluated
    judges         json,                  -- eval.judges of that recipe
    primary_judge  varchar,               -- eval.primary_judge: the judge readers show by default
    recipe         json,                  -- the whole recipe, resolved
    registered_at  timestamp default current_timestamp
);
-- A v1 store did not record them: recover the settings from the checkpoints' training recipes where
-- their max_new_tokens hashes to the stored key (as evaluate.gen_key computes it); the primary judge
-- stays unknown (readers then fall back to the judge with the highest κ on held-out labels).
insert or ignore into evaluations (gen_key, settings, sweep)
with used as (
    select distinct g.gen_key, c.sweep, cast(c.recipe->'eval'->>'max_new_tokens' as integer) as max_new_tokens
    from generations g
    join checkpoints c on c.fingerprint = g.checkpoint_fp
),
final as (
    select gen_key,
           any_value(case when gen_key = 'g-' || sha256('{"greedy": true, "max_new_tokens": ' || max_new_tokens
                                                         || ', "system": null}')[:10]
                          then json_object('greedy', true, 'max_new_tokens', max_new_tokens, 'system', null) end)
               as settings,
           any_value(sweep) as sweep
    from used
    group by gen_key
)
select * from final;
