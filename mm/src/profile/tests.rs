//! Tests of the profile table.
use super::*;

#[test]
fn names_round_trip() {
    for n in KernelProfile::builtin_names() {
        assert_eq!(KernelProfile::parse(n).unwrap().to_string(), *n);
    }
}

#[test]
fn overlays_change_knobs() {
    let p = KernelProfile::parse("v4.10+capper").unwrap();
    assert_eq!(p.knobs.gup_fast_range, GupFastRange::Capper);
    assert_eq!(
        KernelProfile::parse("v4.10+layton")
            .unwrap()
            .knobs
            .get_pages_alloc,
        GetPagesAlloc::LaytonPosted
    );
    assert!(
        KernelProfile::parse("v6.13+numa")
            .unwrap()
            .knobs
            .numa_balancing
    );
    let k = KernelProfile::parse("v4.17+small-refcount").unwrap().knobs;
    assert_eq!((k.refcount_bits, k.ref_get_checked), (12, false));
    let k = KernelProfile::parse("v4.10+small-refcount+refcount-checks")
        .unwrap()
        .knobs;
    assert_eq!((k.refcount_bits, k.ref_get_checked), (12, true));
    let k = KernelProfile::parse("v6.13").unwrap().knobs;
    assert_eq!((k.refcount_bits, k.ref_get_checked), (32, true));
    assert!(matches!(
        KernelProfile::parse("v6.13+refcount-checks"),
        Err(ProfileError::Inapplicable { .. })
    ));
}

#[test]
fn gup_fork_overlays() {
    let k = KernelProfile::parse("v4.17").unwrap().knobs;
    assert_eq!(k.wp_reuse_rule, WpReuseRule::Mapcount);
    assert!(!k.foll_pin && !k.fork_copy_maybe_pinned && !k.force_cow_on_read_pin);
    let k = KernelProfile::parse("v4.17+cow-break-on-pin")
        .unwrap()
        .knobs;
    assert!(k.force_cow_on_read_pin && k.foll_pin);
    assert_eq!(k.wp_reuse_rule, WpReuseRule::Mapcount);
    let k = KernelProfile::parse("v4.17+wp-page-count").unwrap().knobs;
    assert_eq!(k.wp_reuse_rule, WpReuseRule::Refcount);
    assert!(k.fork_copy_maybe_pinned && k.foll_pin && !k.force_cow_on_read_pin);
    assert!(!k.ro_pin_unshare);
    let k = KernelProfile::parse("v6.13").unwrap().knobs;
    assert_eq!(k.wp_reuse_rule, WpReuseRule::AnonExclusive);
    assert!(k.fork_copy_maybe_pinned && k.ro_pin_unshare && !k.force_cow_on_read_pin);
    for bad in [
        "v6.13+wp-page-count",
        "v6.13+cow-break-on-pin",
        "v4.17+cow-break-on-pin+wp-page-count",
        "v4.17+wp-page-count+cow-break-on-pin",
    ] {
        assert!(
            matches!(
                KernelProfile::parse(bad),
                Err(ProfileError::Inapplicable { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn table_queries_answer_what_callers_used_to_ask_of_names() {
    let p = |n: &str| KernelProfile::parse(n).unwrap();
    assert_eq!(KernelProfile::newest().name(), "v6.18");
    assert_eq!(KernelProfile::of_base(Base::oldest()).name(), "v4.10");
    assert_eq!("v4.17+numa".parse::<KernelProfile>(), Ok(p("v4.17+numa")));
    for (n, eras) in [
        ("v4.10", false),
        ("v4.17", true),
        ("v4.17+small-refcount", true),
        ("v6.13", false),
    ] {
        assert_eq!(p(n).has_gup_fork_eras(), eras, "{n}");
    }
    let posted = p("v4.10").as_posted_with(Overlay::Layton).unwrap();
    assert_eq!(posted, p("v4.10+layton"));
    for n in ["v4.17", "v4.10+capper", "v6.13"] {
        assert_eq!(p(n).as_posted_with(Overlay::Layton), None, "{n}");
    }
    assert_eq!(p("v4.10").as_posted_with(Overlay::Numa), None);
    assert_eq!(
        KernelProfile::builtins().len(),
        KernelProfile::builtin_names().len()
    );
}

#[test]
fn consumer_knobs_follow_the_base_not_the_overlays() {
    let k = |p: &str| KernelProfile::parse(p).unwrap().knobs;
    let c = |p: &str| {
        let k = k(p);
        (k.ceph_dio_bvecs, k.ceph_max_write_size, k.bio_iov_iter_loop)
    };
    assert_eq!(c("v4.10"), (false, None, false));
    assert_eq!(c("v4.10+layton"), (false, None, false));
    assert_eq!(c("v4.17"), (true, Some(16 << 20), false));
    assert_eq!(c("v4.17+layton"), (true, Some(16 << 20), false));
    assert_eq!(c("v6.13"), (true, Some(64 << 20), true));
    let table = KernelProfile::parse("v4.17").unwrap().knob_table();
    let row = table.iter().find(|r| r.0 == "ceph_max_write_size").unwrap();
    assert_eq!(row.1, "16 MiB");
}

#[test]
fn v6_18_is_v6_13_with_the_three_post_6_13_knobs() {
    let k = |p: &str| KernelProfile::parse(p).unwrap().knobs;
    let (old, new) = (k("v6.13"), k("v6.18"));
    assert!(!old.dio_align_in_bio && !old.pipe_write_no_empty_buf);
    assert!(!old.write_prefault_after_copy);
    assert!(new.dio_align_in_bio && new.pipe_write_no_empty_buf);
    assert!(new.write_prefault_after_copy);
    assert!(!new.dio_extract_align);
    let rewound = Knobs {
        dio_align_in_bio: false,
        pipe_write_no_empty_buf: false,
        write_prefault_after_copy: false,
        ..new
    };
    assert_eq!(
        rewound, old,
        "v6.18 differs from v6.13 only in its own knobs"
    );
    for bad in ["v6.18+capper", "v6.18+layton", "v6.18+dirtycow"] {
        assert!(
            matches!(
                KernelProfile::parse(bad),
                Err(ProfileError::Inapplicable { .. })
            ),
            "{bad}"
        );
    }
    let k = KernelProfile::parse("v6.18+dio-extract-align")
        .unwrap()
        .knobs;
    assert!(k.dio_extract_align && k.dio_align_in_bio);
    for bad in ["v6.13+dio-extract-align", "v4.10+dio-extract-align"] {
        assert!(
            matches!(
                KernelProfile::parse(bad),
                Err(ProfileError::Inapplicable { .. })
            ),
            "{bad}"
        );
    }
    let table = KernelProfile::parse("v6.18").unwrap().knob_table();
    let row = table
        .iter()
        .find(|r| r.0 == "pipe_write_no_empty_buf")
        .unwrap();
    assert!(row.2.contains("ee5eda8ea595"), "{}", row.2);
}

#[test]
fn nearest_profile_to_a_host_release() {
    let n = |r: &str| KernelProfile::nearest_to_release(r).map(|p| p.name());
    assert_eq!(n("6.18.44").as_deref(), Some("v6.18"));
    assert_eq!(n("6.16.0-rc3-amd64").as_deref(), Some("v6.18"));
    assert_eq!(n("6.15.2").as_deref(), Some("v6.13"));
    assert_eq!(n("6.13.7").as_deref(), Some("v6.13"));
    assert_eq!(n("6.1.0-40-amd64").as_deref(), Some("v6.13"));
    assert_eq!(n("5.4.0").as_deref(), Some("v4.17"));
    assert_eq!(n("4.19.0").as_deref(), Some("v4.17"));
    assert_eq!(n("7.1.0").as_deref(), Some("v6.18"));
    assert_eq!(n("unknown"), None);
}

#[test]
fn touch_pmd_dirties_on_read_only_before_a8f97366452e() {
    let k = |p: &str| KernelProfile::parse(p).unwrap().knobs.thp_touch_dirty;
    assert_eq!(k("v4.10"), ThpTouchDirty::Always);
    assert_eq!(k("v4.10+dirtycow"), ThpTouchDirty::Always);
    assert_eq!(k("v4.17"), ThpTouchDirty::OnWrite);
    assert_eq!(k("v6.13"), ThpTouchDirty::OnWrite);
}

#[test]
fn bad_names_are_clear_errors() {
    assert!(matches!(
        KernelProfile::parse("v5.0"),
        Err(ProfileError::UnknownBase(_))
    ));
    assert!(matches!(
        KernelProfile::parse("v4.10+foo"),
        Err(ProfileError::UnknownOverlay(_))
    ));
    assert!(matches!(
        KernelProfile::parse("v6.13+capper"),
        Err(ProfileError::Inapplicable { .. })
    ));
    assert!(matches!(
        KernelProfile::parse("v6.13+layton"),
        Err(ProfileError::Inapplicable { .. })
    ));
    assert!(matches!(
        KernelProfile::parse("v4.10+layton+layton-intended"),
        Err(ProfileError::Inapplicable { .. })
    ));
    assert!(matches!(
        KernelProfile::parse("v4.10+numa+numa"),
        Err(ProfileError::Duplicate(_))
    ));
    assert!(matches!(
        KernelProfile::parse("v6.13+pipe-advance-fencepost"),
        Err(ProfileError::Inapplicable { .. })
    ));
    assert_eq!(
        KernelProfile::parse("v4.10+pipe-advance-fencepost")
            .unwrap()
            .knobs
            .pipe_advance_release,
        PipeAdvanceRelease::FencepostV4_9
    );
    let msg = KernelProfile::parse("v6.13+capper")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("TASK_SIZE_MAX"), "{msg}");
}

#[test]
fn known_bugs_follow_the_knobs() {
    let known = |p: &str| KernelProfile::parse(p).unwrap().knobs.known_bugs();
    let layton = known("v4.10+layton");
    assert!(layton.contains(&BugClass::LeakedReference));
    assert!(layton.contains(&BugClass::DataMismatch));
    for p in ["v4.10", "v4.10+layton-intended", "v4.17", "v6.13"] {
        assert!(!known(p).contains(&BugClass::LeakedReference), "{p}");
    }
    // Huge Dirty COW is in the v4.10 base, fixed by 4.17.
    assert!(known("v4.10").contains(&BugClass::ZeroPageCorrupted));
    assert!(!known("v4.17").contains(&BugClass::ZeroPageCorrupted));
    assert!(known("v4.10+pipe-advance-fencepost").contains(&BugClass::Infoleak));
    assert!(!known("v4.10").contains(&BugClass::Infoleak));
    assert!(known("v4.17+small-refcount").contains(&BugClass::UseAfterFree));
    assert!(!known("v4.17+small-refcount+refcount-checks").contains(&BugClass::UseAfterFree));
    assert!(known("v4.10+dirtycow").contains(&BugClass::PageCacheCorrupted));
    assert!(!known("v4.10").contains(&BugClass::PageCacheCorrupted));
    // 6.x: only first_bvec_segment's leak on an empty bvec element.
    assert_eq!(known("v6.13"), vec![BugClass::EmptyBvecPageRef]);
    assert_eq!(known("v6.18"), vec![BugClass::EmptyBvecPageRef]);
    assert!(!known("v4.17").contains(&BugClass::EmptyBvecPageRef));
}
