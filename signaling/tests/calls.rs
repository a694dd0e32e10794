//! The life of a call on the switchboard, flow by flow, in virtual time.

mod common;

use common::{dev, Board};
use hualu_signaling::core::{CallError, Command, EndReason, Event, Hook, LeaveReason, Media, Output, Reply};
use std::time::Duration;

#[test]
fn every_device_rings_the_first_answer_wins_and_a_hangup_ends_it() {
    let mut b = Board::new();
    let (a, phone, tablet) = (dev("alice", "phone"), dev("bob", "phone"), dev("bob", "tablet"));
    b.online(&[&a, &phone, &tablet]);
    let call = b.call(&a, &["bob"], Media::Audio);
    assert_eq!(b.kinds(&phone), ["incoming"]);
    assert_eq!(b.kinds(&tablet), ["incoming"]);
    assert_eq!(b.kinds(&a), ["ringing"], "the caller hears ringback once");
    assert_eq!(b.hook_kinds(), ["call.invite"]);

    b.cmd(&tablet, Command::Accept(call.clone())).expect("accept");
    assert_eq!(b.kinds(&phone), ["answered_elsewhere"]);
    assert_eq!(b.kinds(&a), ["answered"]);
    assert!(b.kinds(&tablet).is_empty(), "the winner has its reply");
    let late = b.cmd(&phone, Command::Accept(call.clone()));
    assert_eq!(late, Err(CallError::AnsweredElsewhere));
    assert_eq!(
        b.media,
        [
            Output::Place(call.clone()),
            Output::Join {
                call: call.clone(),
                to: a.clone()
            },
            Output::Join {
                call: call.clone(),
                to: tablet.clone()
            },
        ]
    );
    assert_eq!(b.hook_kinds(), ["call.answered"]);

    b.advance(Duration::from_secs(60));
    b.cmd(&a, Command::Hangup(call.clone())).expect("hangup");
    let ended = Event::Ended {
        call: call.clone(),
        reason: EndReason::Hangup,
    };
    assert_eq!(b.take(&tablet), std::slice::from_ref(&ended));
    assert_eq!(b.take(&a), [ended], "the caller sees the end too");
    assert_eq!(b.media.last(), Some(&Output::Close(call.clone())));
    match b.hooks.as_slice() {
        [Hook::Ended {
            duration_ms,
            participants,
            reason,
            ..
        }] => {
            assert_eq!(*duration_ms, 60_000);
            assert_eq!(participants, &["alice", "bob"]);
            assert_eq!(*reason, EndReason::Hangup);
        }
        other => panic!("hooks: {other:?}"),
    }
    assert_eq!(b.sb.call_count(), 0);
    let after = b.cmd(&tablet, Command::Hangup(call));
    assert_eq!(after, Err(CallError::Ended(EndReason::Hangup)));
}

#[test]
fn a_decline_declines_everywhere_and_an_ignore_silences_one_device() {
    let mut b = Board::new();
    let (a, phone, tablet) = (dev("alice", "phone"), dev("bob", "phone"), dev("bob", "tablet"));
    b.online(&[&a, &phone, &tablet]);
    let call = b.call(&a, &["bob"], Media::Video);
    b.cmd(&tablet, Command::Ignore(call.clone())).expect("ignore");
    b.events.clear();
    b.cmd(&phone, Command::Decline(call.clone())).expect("decline");
    assert!(b.kinds(&tablet).is_empty(), "the ignoring device was silent already");
    assert!(b.kinds(&phone).is_empty(), "the decliner has its reply");
    assert_eq!(b.kinds(&a), ["declined", "ended"]);
    assert_eq!(b.sb.call_count(), 0);

    let call = b.call(&a, &["bob"], Media::Audio);
    b.events.clear();
    b.cmd(&tablet, Command::Decline(call.clone())).expect("decline");
    assert_eq!(
        b.take(&phone),
        [Event::Declined {
            call,
            user: "bob".into()
        }]
    );
}

#[test]
fn nobody_answers_within_the_ring_timeout() {
    let mut b = Board::new();
    let (a, phone) = (dev("alice", "phone"), dev("bob", "phone"));
    b.online(&[&a, &phone]);
    let call = b.call(&a, &["bob"], Media::Audio);
    b.events.clear();
    b.hooks.clear();
    b.advance(Duration::from_secs(44));
    assert!(b.kinds(&phone).is_empty());
    b.advance(Duration::from_secs(2));
    assert_eq!(b.kinds(&phone), ["missed"]);
    assert_eq!(
        b.take(&a),
        [
            Event::Missed {
                call: call.clone(),
                user: "bob".into()
            },
            Event::Ended {
                call,
                reason: EndReason::NoAnswer
            },
        ]
    );
    assert_eq!(b.hook_kinds(), ["call.missed", "call.ended"]);
}

#[test]
fn the_caller_cancels_and_every_device_stops_ringing() {
    let mut b = Board::new();
    let (a, phone, tablet) = (dev("alice", "phone"), dev("bob", "phone"), dev("bob", "tablet"));
    b.online(&[&a, &phone, &tablet]);
    let call = b.call(&a, &["bob"], Media::Audio);
    b.events.clear();
    b.hooks.clear();
    b.cmd(&a, Command::Cancel(call.clone())).expect("cancel");
    assert_eq!(b.take(&phone), [Event::Cancelled { call: call.clone() }]);
    assert_eq!(b.take(&tablet), [Event::Cancelled { call: call.clone() }]);
    assert_eq!(b.hook_kinds(), ["call.cancelled", "call.ended"]);
    assert!(b.media.is_empty(), "no room for a call never answered");
    let again = b.cmd(&phone, Command::Accept(call));
    assert_eq!(again, Err(CallError::Ended(EndReason::Cancelled)));
}

#[test]
fn a_busy_callee_refuses_or_takes_call_waiting() {
    let mut b = Board::new();
    let (a, bob, carol) = (dev("alice", "phone"), dev("bob", "phone"), dev("carol", "phone"));
    b.online(&[&a, &bob, &carol]);
    let first = b.call(&carol, &["bob"], Media::Audio);
    b.cmd(&bob, Command::Accept(first.clone())).expect("accept");
    b.events.clear();

    let call = b.call(&a, &["bob"], Media::Audio);
    assert_eq!(
        b.take(&a),
        [
            Event::Busy {
                call: call.clone(),
                user: "bob".into()
            },
            Event::Ended {
                call,
                reason: EndReason::Busy
            },
        ]
    );
    assert!(b.kinds(&bob).is_empty(), "a busy callee is not disturbed");

    b.cmd(&bob, Command::Settings { call_waiting: true }).expect("settings");
    let call = b.call(&a, &["bob"], Media::Audio);
    match b.take(&bob).as_slice() {
        [Event::Incoming {
            call: c, waiting: true, ..
        }] => assert_eq!(*c, call),
        other => panic!("bob got {other:?}"),
    }
    assert!(b.sb.call(&first).is_some(), "the first call goes on");
}

#[test]
fn glare_merges_into_the_older_call() {
    let mut b = Board::new();
    let (a, bob) = (dev("alice", "phone"), dev("bob", "phone"));
    b.online(&[&a, &bob]);
    let older = b.call(&a, &["bob"], Media::Audio);
    let r = b.cmd(
        &bob,
        Command::Invite {
            to: vec!["alice".into()],
            media: Media::Audio,
            call: None,
        },
    );
    assert_eq!(
        r,
        Ok(Reply::Call {
            call: older.clone(),
            merged: true
        })
    );
    assert_eq!(b.sb.call_count(), 1, "one call");
    assert_eq!(
        b.take(&a).last(),
        Some(&Event::Answered {
            call: older.clone(),
            user: "bob".into(),
            device: "phone".into()
        })
    );
    assert!(b.media.contains(&Output::Place(older)));
}

#[test]
fn a_group_call_goes_on_until_the_last_one_leaves() {
    let mut b = Board::new();
    let [a, bob, carol, dan] = ["alice", "bob", "carol", "dan"].map(|u| dev(u, "phone"));
    b.online(&[&a, &bob, &carol, &dan]);
    let call = b.call(&a, &["bob", "carol"], Media::Video);
    b.cmd(&bob, Command::Accept(call.clone())).expect("bob accepts");
    b.cmd(&carol, Command::Decline(call.clone())).expect("carol declines");
    b.cmd(&a, Command::Hangup(call.clone())).expect("alice leaves");
    assert!(b.sb.call(&call).is_none(), "bob alone: the call ends");

    let call = b.call(&a, &["bob", "carol"], Media::Video);
    b.cmd(&bob, Command::Accept(call.clone())).expect("bob accepts");
    b.cmd(&carol, Command::Accept(call.clone())).expect("carol accepts");
    b.events.clear();
    b.cmd(&a, Command::Hangup(call.clone())).expect("alice leaves");
    let left = Event::Left {
        call: call.clone(),
        user: "alice".into(),
        reason: LeaveReason::Hangup,
    };
    assert_eq!(b.take(&bob), std::slice::from_ref(&left));
    assert_eq!(b.take(&carol), [left]);
    let more = Command::Invite {
        to: vec!["dan".into()],
        media: Media::Video,
        call: Some(call.clone()),
    };
    b.cmd(&bob, more).expect("bob invites dan");
    assert_eq!(b.kinds(&carol), ["invited", "ringing"]);
    match b.take(&dan).as_slice() {
        [Event::Incoming { members, from, .. }] => {
            assert_eq!(from, "alice");
            assert_eq!(members, &["bob", "carol"]);
        }
        other => panic!("dan got {other:?}"),
    }
    b.cmd(&dan, Command::Accept(call.clone())).expect("dan accepts");
    assert_eq!(
        b.media.last(),
        Some(&Output::Join {
            call: call.clone(),
            to: dan.clone()
        })
    );
    for d in [&bob, &carol] {
        b.cmd(d, Command::Hangup(call.clone())).expect("hangup");
    }
    assert_eq!(
        b.take(&dan).last(),
        Some(&Event::Ended {
            call: call.clone(),
            reason: EndReason::Hangup
        })
    );
    assert_eq!(b.sb.call_count(), 0);
}

#[test]
fn a_dropped_connection_has_a_grace_period() {
    let mut b = Board::new();
    let (a, bob) = (dev("alice", "phone"), dev("bob", "phone"));
    b.online(&[&a, &bob]);
    let call = b.call(&a, &["bob"], Media::Audio);
    b.cmd(&bob, Command::Accept(call.clone())).expect("accept");
    b.sb.media(&call, "alice", true, b.now);
    b.drain();
    assert_eq!(b.kinds(&a).last().map(String::as_str), Some("active"));
    b.sb.disconnect(&bob, b.now);
    b.drain();
    assert_eq!(b.kinds(&a), ["reconnecting"]);
    b.advance(Duration::from_secs(20));
    b.sb.connect(&bob, b.now);
    b.drain();
    assert_eq!(b.kinds(&a), ["reconnected"]);
    b.sb.disconnect(&bob, b.now);
    b.advance(Duration::from_secs(29));
    assert!(b.sb.call(&call).is_some(), "still waiting");
    b.advance(Duration::from_secs(2));
    assert_eq!(
        b.take(&a).last(),
        Some(&Event::Ended {
            call,
            reason: EndReason::ConnectionLost
        })
    );
}

#[test]
fn dead_media_counts_as_a_dropped_connection() {
    let mut b = Board::new();
    let (a, bob) = (dev("alice", "phone"), dev("bob", "phone"));
    b.online(&[&a, &bob]);
    let call = b.call(&a, &["bob"], Media::Audio);
    b.cmd(&bob, Command::Accept(call.clone())).expect("accept");
    b.events.clear();
    b.sb.media(&call, "bob", false, b.now);
    b.drain();
    assert_eq!(b.kinds(&a), ["reconnecting"]);
    b.sb.media(&call, "bob", true, b.now);
    b.drain();
    assert_eq!(b.kinds(&a), ["reconnected", "active"]);
}

#[test]
fn a_retried_command_changes_nothing() {
    let mut b = Board::new();
    let (a, phone, tablet) = (dev("alice", "phone"), dev("bob", "phone"), dev("bob", "tablet"));
    b.online(&[&a, &phone, &tablet]);
    let invite = Command::Invite {
        to: vec!["bob".into()],
        media: Media::Audio,
        call: None,
    };
    let first = b.cmd_key(&a, "i1", invite.clone());
    let again = b.cmd_key(&a, "i1", invite);
    assert_eq!(first, again);
    assert_eq!(b.sb.call_count(), 1, "one call");
    let Ok(Reply::Call { call, .. }) = first else {
        panic!("{first:?}")
    };
    let accept = b.cmd_key(&phone, "a1", Command::Accept(call.clone()));
    b.events.clear();
    b.media.clear();
    assert_eq!(b.cmd_key(&phone, "a1", Command::Accept(call.clone())), accept);
    assert!(b.events.is_empty() && b.media.is_empty(), "nothing happens twice");
    let hangup = b.cmd_key(&phone, "h1", Command::Hangup(call.clone()));
    assert_eq!(hangup, Ok(Reply::Done));
    assert_eq!(b.cmd_key(&phone, "h1", Command::Hangup(call)), Ok(Reply::Done));
}

#[test]
fn an_offline_callee_is_pushed_and_rings_when_it_connects() {
    let mut b = Board::new();
    let (a, phone) = (dev("alice", "phone"), dev("bob", "phone"));
    b.online(&[&a, &phone]);
    b.sb.disconnect(&phone, b.now);
    let call = b.call(&a, &["bob", "erin"], Media::Audio);
    match b.hooks.as_slice() {
        [Hook::Invite {
            offline, unreachable, ..
        }] => {
            assert_eq!(offline, std::slice::from_ref(&phone));
            assert_eq!(unreachable, &["bob", "erin"]);
        }
        other => panic!("hooks: {other:?}"),
    }
    assert!(b.kinds(&a).is_empty(), "no ringback before a device rings");
    b.online(&[&phone]);
    assert_eq!(b.kinds(&phone), ["incoming"]);
    assert_eq!(
        b.take(&a),
        [Event::Ringing {
            call,
            user: "bob".into()
        }]
    );
}

#[test]
fn presence_follows_devices() {
    let mut b = Board::new();
    let (a, phone) = (dev("alice", "phone"), dev("bob", "phone"));
    b.online(&[&a]);
    let r = b.cmd(&a, Command::Watch(vec!["bob".into()]));
    assert_eq!(r, Ok(Reply::Presence(vec![("bob".into(), vec![])])));
    b.online(&[&phone]);
    assert_eq!(
        b.take(&a),
        [Event::Presence {
            user: "bob".into(),
            devices: vec!["phone".into()]
        }]
    );
    b.sb.disconnect(&phone, b.now);
    b.drain();
    assert_eq!(
        b.take(&a),
        [Event::Presence {
            user: "bob".into(),
            devices: vec![]
        }]
    );
}

#[test]
fn bad_commands_get_clear_errors() {
    let mut b = Board::new();
    let a = dev("alice", "phone");
    b.online(&[&a]);
    let invite = |to: Vec<String>| Command::Invite {
        to,
        media: Media::Audio,
        call: None,
    };
    assert!(matches!(b.cmd(&a, invite(vec![])), Err(CallError::BadRequest(_))));
    assert!(matches!(
        b.cmd(&a, invite(vec!["alice".into()])),
        Err(CallError::BadRequest(_))
    ));
    let crowd = (0..40).map(|i| format!("u{i}")).collect();
    assert!(matches!(b.cmd(&a, invite(crowd)), Err(CallError::BadRequest(_))));
    let nowhere = hualu_signaling::core::CallId("c-nope".into());
    assert_eq!(b.cmd(&a, Command::Accept(nowhere)), Err(CallError::NoSuchCall));
    let call = b.call(&a, &["bob"], Media::Audio);
    assert_eq!(
        b.cmd(&dev("mallory", "x"), Command::Accept(call.clone())),
        Err(CallError::NotInCall)
    );
    assert_eq!(
        b.cmd(&dev("mallory", "x"), Command::Cancel(call.clone())),
        Err(CallError::NotInCall)
    );
    let second = b.cmd(&a, invite(vec!["carol".into()]));
    assert_eq!(second, Err(CallError::AlreadyInCall));
    assert_eq!(CallError::AlreadyInCall.code(), "already_in_call");
}

#[test]
fn an_answered_call_with_no_room_ends_for_everyone_with_no_capacity() {
    let mut b = Board::new();
    let (a, phone, tablet) = (dev("alice", "phone"), dev("bob", "phone"), dev("bob", "tablet"));
    b.online(&[&a, &phone, &tablet]);
    let call = b.call(&a, &["bob"], Media::Audio);
    b.cmd(&phone, Command::Accept(call.clone())).expect("accept");
    b.events.clear();
    b.hooks.clear();
    b.sb.fail(&call, b.now);
    b.drain();
    let ended = Event::Ended {
        call: call.clone(),
        reason: EndReason::NoCapacity,
    };
    assert_eq!(b.take(&a), std::slice::from_ref(&ended));
    assert_eq!(b.take(&phone), [ended]);
    assert!(
        b.kinds(&tablet).is_empty(),
        "the other device stopped ringing at the answer"
    );
    assert_eq!(b.hook_kinds(), ["call.ended"]);
    assert_eq!(b.sb.call_count(), 0);
    let after = b.cmd(&a, Command::Hangup(call));
    assert_eq!(after, Err(CallError::Ended(EndReason::NoCapacity)));
}
