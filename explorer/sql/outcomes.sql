-- Outcome counts per checkpoint × prompt kind × suite × category, from one judge (at the version
-- judge_version picks) for one evaluation ($gen_key), with human labels overriding the judge when
-- $use_human is true. Only checkpoints whose evaluation on the split is complete are counted, so a
-- run cut off mid-way is never half-counted.
with counts as (
    -- the counts every write keeps (eval_v3.sql), not the judgments themselves: a few hundred rows
    select c.id as checkpoint_id, k.suite, k.category, k.kind, k.label, k.n
    from ev.judged_counts k
    join judge_version v on v.judge = k.judge and v.judge_version = k.judge_version
    join ev.checkpoints c on c.fingerprint = k.checkpoint_fp
    where k.judge = $judge and k.gen_key = $gen_key and k.split = $split
),
complete as (
    select checkpoint_id from counts group by checkpoint_id
    having sum(n) = (select count(*) from ev.prompts where split = $split)
),
overridden as (
    -- each response a reviewer relabelled moves from the judge's label to the reviewer's (views.sql, labelled)
    select j.checkpoint_id, p.suite, p.category, p.kind, j.judge_label, j.human_label
    from labelled($use_human) j
    join ev.prompts p on p.id = j.prompt_id and p.split = $split
    where $use_human and j.judge = $judge and j.gen_key = $gen_key and j.human_label <> j.judge_label
),
moved as (
    select checkpoint_id, suite, category, kind, label, n from counts
    union all
    select checkpoint_id, suite, category, kind, judge_label, -1 from overridden
    union all
    select checkpoint_id, suite, category, kind, human_label, 1 from overridden
),
final as (
    select checkpoint_id, kind, suite, category,
           sum(n) as n,
           coalesce(sum(n) filter (where label = 'full_refusal'), 0) as n_full_refusal,
           coalesce(sum(n) filter (where label = 'partial_refusal'), 0) as n_partial_refusal,
           coalesce(sum(n) filter (where label = 'full_compliance'), 0) as n_compliance
    from moved
    join complete using (checkpoint_id)
    group by checkpoint_id, kind, suite, category
)
select * from final order by checkpoint_id, kind, suite, category
