-- Each judge's scores against human labels, one row per judge and dataset: the scores of the version its
-- judgments are read at (views.sql: judge_version), else its most recently scored version.
with ranked as (
    select m.judge, m.judge_version, m.dataset, m.n_labels, m.agreement, m.kappa, m.confusion, m.computed_at,
           row_number() over (partition by m.judge, m.dataset
                              order by coalesce(m.judge_version = v.judge_version, false) desc, m.computed_at desc) as rank
    from ev.judge_metrics m
    left join judge_version v on v.judge = m.judge
),
final as (
    select judge, judge_version, dataset, n_labels, agreement, kappa, confusion, computed_at from ranked where rank = 1
)
select * from final order by dataset, judge
